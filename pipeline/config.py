"""The typed schema of ``params.yaml``: parsed once, validated whole, frozen.

Every knob lives in ``params.yaml``; this module only says which keys exist, their types and their allowed
ranges. A bad file stops the stage with one line that names the key, the value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import PipelineError

DEFAULT_PARAMS = Path("params.yaml")

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class _Section(BaseModel):
    # strict: YAML already gives typed values, so "0.1" (a string) or 1 for a bool is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


BUNDLED = ("penguins", "diabetes", "digits", "gunpoint")
BUNDLED_IMAGES = ("digits",)
BUNDLED_SEQUENCES = ("gunpoint",)
INPUTS = "inputs"  # the folder user files live in: ingest depends on it, so DVC sees every change
FILE_SUFFIXES = (".csv", ".parquet", ".npz")
IMAGE_SUFFIX = ".npz"


class SequenceConfig(_Section):
    """Long-format sequences: one row per (series, time step). Both keys set, or both null for other data."""

    id: str | None = Field(min_length=1)
    time: str | None = Field(min_length=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> SequenceConfig:
        if (self.id is None) != (self.time is None):
            raise ValueError(
                f"data.sequence: id = {self.id!r}, time = {self.time!r}: expected both columns named (long-format "
                "sequences) or both null (one row per example)"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when the data are long-format sequences."""
        return self.id is not None


class DataConfig(_Section):
    """What to load and what to predict."""

    source: str
    target: str = Field(min_length=1)
    task: Literal["auto", "classification", "regression"]
    drop: Annotated[tuple[str, ...], Field(strict=False)]  # columns that are not features (ids, free text)
    numeric: Annotated[tuple[str, ...], Field(strict=False)]  # columns declared numeric: a stray text cell is an error
    sequence: SequenceConfig

    @model_validator(mode="after")
    def _known_source(self) -> DataConfig:
        if self.modality == "image" and self.sequence.enabled:
            raise ValueError(
                f"data.sequence.id = {self.sequence.id!r} with data.source = {self.source!r}, an image source: "
                "expected data.sequence.id and data.sequence.time to be null"
            )
        if self.source in BUNDLED_SEQUENCES and not self.sequence.enabled:
            raise ValueError(
                f"data.source = {self.source!r} holds long-format sequences: expected data.sequence.id: series and "
                "data.sequence.time: step"
            )
        if self.source in BUNDLED:
            return self
        path = PurePosixPath(self.source)
        if path.suffix not in FILE_SUFFIXES or path.parts[:1] != (INPUTS,) or ".." in path.parts or len(path.parts) < 2:
            raise ValueError(
                f"data.source = {self.source!r}: expected one of {BUNDLED} or a {'/'.join(FILE_SUFFIXES)} file under "
                f"{INPUTS}/ (for example {INPUTS}/customers.csv), so that DVC tracks it"
            )
        return self

    @property
    def name(self) -> str:
        """The dataset's name: the bundled name, or the file's stem (``inputs/churn.csv`` -> ``churn``)."""
        return self.source if self.source in BUNDLED else PurePosixPath(self.source).stem

    @property
    def modality(self) -> Literal["tabular", "image", "sequence"]:
        """``image`` for digits and ``.npz`` files, ``sequence`` when ``data.sequence`` names its columns."""
        if self.source in BUNDLED_IMAGES or PurePosixPath(self.source).suffix == IMAGE_SUFFIX:
            return "image"
        return "sequence" if self.sequence.enabled else "tabular"


class SplitConfig(_Section):
    """Train/validation/test fractions: seeded and stratified, or ordered in time."""

    val: Fraction
    test: Fraction
    method: Literal["random", "time"]
    time_column: str | None = Field(min_length=1)  # orders rows for method 'time' (sequences: data.sequence.time)

    @model_validator(mode="after")
    def _leaves_train_rows(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(
                f"split.val + split.test = {self.val + self.test:g}: expected a sum below 1 so rows remain for train"
            )
        return self


NUMERIC_FILLS = ("mean", "median", "most_frequent", "constant", "knn", "ffill", "interpolate")
SEQUENCE_FILLS = ("ffill", "interpolate")


class CleanConfig(_Section):
    """Missing values and class imbalance, learned from the train split only."""

    numeric: Literal["mean", "median", "most_frequent", "constant", "knn", "ffill", "interpolate"]
    categorical: Literal["most_frequent", "constant"]
    fill_value: float
    fill_category: str = Field(min_length=1)
    max_missing: Annotated[float, Field(gt=0.0, le=1.0)]
    drop_rows: bool
    indicators: bool
    knn_neighbors: PositiveInt
    knn_reference_rows: PositiveInt
    imbalance: Literal["none", "downsample", "upsample", "smote", "class_weight"]
    smote_neighbors: PositiveInt


class ScaleConfig(_Section):
    """Feature scaling and categorical encoding, fitted on the train split only."""

    method: Literal["standard", "minmax", "robust", "none"]
    encoding: Literal["onehot", "ordinal"]


class CnnConfig(_Section):
    """Convolution blocks (``model.kind: cnn``): Conv2d over images, Conv1d over time for sequences."""

    channels: Annotated[tuple[PositiveInt, ...], Field(strict=False, min_length=1)]
    kernel: PositiveInt
    stride: PositiveInt
    padding: Annotated[int, Field(ge=0)]
    pool: Literal["max", "avg", "none"]
    batch_norm: bool


class RnnConfig(_Section):
    """The recurrent encoder (``model.kind: rnn``)."""

    cell: Literal["rnn", "lstm", "gru"]
    hidden_size: PositiveInt
    layers: PositiveInt
    bidirectional: bool


class ModelConfig(_Section):
    """The network architecture."""

    kind: Literal["fnn", "cnn", "rnn"]
    hidden: Annotated[tuple[PositiveInt, ...], Field(strict=False)]  # YAML lists become tuples
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"]
    init: Literal["default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]
    bias: bool
    norm: Literal["none", "batch", "layer"]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    cnn: CnnConfig
    rnn: RnnConfig


class EarlyStoppingConfig(_Section):
    """Stop when the monitored validation metric stops improving."""

    monitor: Literal["val/loss", "val/acc", "val/mae"]
    mode: Literal["auto", "min", "max"]
    patience: PositiveInt
    min_delta: Annotated[float, Field(ge=0.0)]

    @model_validator(mode="after")
    def _mode_fits_the_monitor(self) -> EarlyStoppingConfig:
        natural = self.direction
        if self.mode not in ("auto", natural):
            raise ValueError(
                f"train.early_stopping.mode = {self.mode!r} with monitor {self.monitor!r}: expected 'auto' or "
                f"{natural!r} ({self.monitor} improves {'upward' if natural == 'max' else 'downward'})"
            )
        return self

    @property
    def direction(self) -> Literal["min", "max"]:
        """``min`` or ``max``, ``auto`` resolved: loss and MAE are minimised, accuracy maximised."""
        return "max" if self.monitor == "val/acc" else "min"


class ScheduleConfig(_Section):
    """The learning-rate schedule, with an optional linear warm-up (``step`` and ``cosine`` only)."""

    kind: Literal["none", "step", "cosine", "onecycle", "plateau"]
    step_size: PositiveInt  # step: epochs between decays
    gamma: Annotated[float, Field(gt=0.0, lt=1.0)]  # step and plateau: the decay factor
    patience: PositiveInt  # plateau: epochs without a val/loss improvement before decaying
    warmup_epochs: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _warmup_fits(self) -> ScheduleConfig:
        if self.warmup_epochs > 0 and self.kind in ("onecycle", "plateau"):
            raise ValueError(
                f"train.schedule.warmup_epochs = {self.warmup_epochs} with train.schedule.kind = {self.kind!r}: "
                "expected 0 (onecycle warms up by itself; plateau reacts to val/loss instead)"
            )
        return self


class GradientClipConfig(_Section):
    """Clip gradients before each optimizer step (a guard against exploding gradients)."""

    mode: Literal["none", "norm", "value"]
    max: Annotated[float, Field(gt=0.0)]


class AugmentConfig(_Section):
    """Random changes to each training mini-batch (never to val or test), drawn from the seeded torch RNG."""

    flip: Literal["none", "horizontal", "vertical", "both"]  # images: mirror each with probability 0.5
    shift: Annotated[int, Field(ge=0)]  # images: translate by up to this many pixels per axis, zero-filled
    noise: Annotated[float, Field(ge=0.0)]  # any data: Gaussian noise of this std on the scaled features


class TrainConfig(_Section):
    """Optimisation and hardware settings."""

    optimizer: Literal["sgd", "nesterov", "adam", "adamw", "rmsprop"]
    lr: Annotated[float, Field(gt=0.0, le=10.0)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    weight_decay: Annotated[float, Field(ge=0.0)]
    l1: Annotated[float, Field(ge=0.0)]
    schedule: ScheduleConfig
    gradient_clip: GradientClipConfig
    update: Literal["mini_batch", "full_batch", "stochastic"]
    batch_size: PositiveInt
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)]
    regression_loss: Literal["mse", "mae", "huber"]
    max_epochs: PositiveInt
    early_stopping: EarlyStoppingConfig
    augment: AugmentConfig
    lr_find: bool
    restarts: Annotated[int, Field(ge=1, le=100)]  # networks trained from different seeds (seed, seed + 1, ...)
    checkpoint_every: Annotated[int, Field(ge=0)]
    accelerator: Literal["auto", "cpu", "gpu"]
    devices: PositiveInt
    num_nodes: PositiveInt
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"]
    precision: Literal["32-true", "bf16-mixed"]
    cpu_threads: PositiveInt

    @model_validator(mode="after")
    def _momentum_fits_the_optimizer(self) -> TrainConfig:
        if self.momentum > 0 and self.optimizer not in ("sgd", "nesterov", "rmsprop"):
            raise ValueError(
                f"train.momentum = {self.momentum:g} with train.optimizer = {self.optimizer!r}: "
                "expected momentum 0 unless the optimizer is 'sgd', 'nesterov' or 'rmsprop'"
            )
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise ValueError("train.optimizer = 'nesterov' with train.momentum = 0: expected a momentum above 0")
        if self.strategy in ("ddp_spawn", "fsdp"):
            raise ValueError(
                f"train.strategy = {self.strategy!r}: expected 'auto' or 'ddp' (ddp_spawn's workers cannot hand the "
                "best epoch's weights and history back to the stage, and fsdp shards networks too big for one device, "
                "which these are not)"
            )
        world = self.devices * self.num_nodes
        if world > 1 and self.update == "stochastic":
            raise ValueError(
                f"train.update = 'stochastic' with {world} processes (train.devices x train.num_nodes): expected "
                "'mini_batch' or 'full_batch' (one row per step cannot be shared between processes)"
            )
        if world > 1 and self.update == "mini_batch" and self.batch_size < world:
            raise ValueError(
                f"train.batch_size = {self.batch_size} with {world} processes: expected at least {world} (the batch "
                "is global: each process takes its share of every batch)"
            )
        if self.precision == "bf16-mixed" and self.accelerator == "cpu":
            raise ValueError(
                "train.precision = 'bf16-mixed' with train.accelerator = 'cpu': expected '32-true' "
                "(bf16 mixed precision is for GPUs)"
            )
        return self

    @property
    def world_size(self) -> int:
        """Training processes: devices per node times nodes."""
        return self.devices * self.num_nodes

    def rows_per_step(self, n_rows: int) -> int:
        """Rows per optimizer step: all of them (full batch), ``batch_size`` (mini-batch) or 1 (stochastic)."""
        return {"full_batch": max(n_rows, 1), "mini_batch": self.batch_size, "stochastic": 1}[self.update]


class EvaluateConfig(_Section):
    """Test-set evaluation."""

    primary_metric: Literal["accuracy", "macro_f1", "mae", "rmse", "r2"]
    baselines: Annotated[tuple[Literal["dummy", "linear", "forest"], ...], Field(strict=False)]
    baseline_rows: PositiveInt  # train rows the baselines fit on at most (a seeded sample beyond that)
    ensemble: bool  # with train.restarts > 1: the model is the restarts' average, not the best single one


class TrackingConfig(_Section):
    """MLflow experiment and model-registry names.

    ``experiment: auto`` means the experiment is named after the dataset (the bundled name, or the file's stem);
    ``model_name: auto`` means the registered model is ``<dataset>-<model.kind>`` (for example ``penguins-fnn``).
    """

    experiment: str = Field(min_length=1)
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    register_model: bool


class Params(_Section):
    """The whole of ``params.yaml``."""

    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    data: DataConfig
    split: SplitConfig
    clean: CleanConfig
    scale: ScaleConfig
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    tracking: TrackingConfig

    @model_validator(mode="after")
    def _fits_the_task(self) -> Params:
        # with task 'auto' the task is known only once ingest has seen the target; train and evaluate check then
        if self.data.task != "auto":
            check_task(self, self.data.task)
        modality = self.data.modality
        if self.model.kind != "fnn" and modality == "tabular":
            raise ValueError(
                f"model.kind = {self.model.kind!r} with tabular data: expected 'fnn' (convolutions and recurrences "
                "need images or sequences)"
            )
        if self.clean.numeric in SEQUENCE_FILLS and modality != "sequence":
            raise ValueError(
                f"clean.numeric = {self.clean.numeric!r} with {modality} data: expected one of "
                f"{tuple(s for s in NUMERIC_FILLS if s not in SEQUENCE_FILLS)} (filling along time needs "
                "data.sequence)"
            )
        if self.clean.imbalance == "smote" and modality == "sequence":
            raise ValueError(
                "clean.imbalance = 'smote' with sequence data: expected none, downsample, upsample or class_weight "
                "(SMOTE interpolates fixed-width rows, not series of different lengths)"
            )
        augment = self.train.augment
        if modality != "image" and (augment.flip != "none" or augment.shift > 0):
            raise ValueError(
                f"train.augment flip = {augment.flip!r}, shift = {augment.shift} with {modality} data: expected flip "
                "'none' and shift 0 (flips and shifts are for images; noise works on any data)"
            )
        if self.model.norm == "batch" and self.train.update == "stochastic":
            raise ValueError(
                "model.norm = 'batch' with train.update = 'stochastic': expected 'layer' or 'none' (batch statistics "
                "need more than one row per step)"
            )
        if self.evaluate.ensemble and self.train.restarts < 2:
            raise ValueError(
                f"evaluate.ensemble = true with train.restarts = {self.train.restarts}: expected train.restarts of "
                "at least 2 (an ensemble averages several trained networks)"
            )
        if self.split.method == "time":
            if modality == "image":
                raise ValueError("split.method = 'time' with image data: expected 'random' (images carry no time)")
            if modality == "tabular" and self.split.time_column is None:
                raise ValueError("split.method = 'time': expected split.time_column to name the column to order by")
        return self

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment that train and evaluate log to."""
        return self.data.name if self.tracking.experiment == "auto" else self.tracking.experiment

    @property
    def registered_model_name(self) -> str:
        """The MLflow registered-model name: ``<data.source>-<model.kind>`` unless set explicitly."""
        if self.tracking.model_name == "auto":
            return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.data.name}-{self.model.kind}").lstrip("-_.")
        return self.tracking.model_name


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``1e-3`` is a string; DVC reads params.yaml as YAML 1.2, where it is a
    number. Resolve floats the 1.2 way so both readers agree on every value."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:[eE][-+]?\d+)$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
REGRESSION_METRICS = ("mae", "rmse", "r2")
# asked for explicitly, these only make sense with classes; the default 'upsample' is left to clean to ignore
CLASS_ONLY_IMBALANCE = ("downsample", "smote", "class_weight")


def check_task(params: Params, task: str) -> None:
    """Refuse settings that only make sense for the other task.

    Raises:
        ValueError: Naming the key, its value and what the task allows (pydantic turns it into a message;
            stages call it through :func:`require_task`).
    """
    metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if params.evaluate.primary_metric not in metrics:
        raise ValueError(
            f"evaluate.primary_metric = {params.evaluate.primary_metric!r} with a {task} task: expected one of {metrics}"
        )
    monitor = params.train.early_stopping.monitor
    if task == "regression" and monitor == "val/acc":
        raise ValueError("train.early_stopping.monitor = 'val/acc' with a regression task: expected 'val/loss' or 'val/mae'")
    if task == "classification" and monitor == "val/mae":
        raise ValueError(
            "train.early_stopping.monitor = 'val/mae' with a classification task: expected 'val/loss' or 'val/acc'"
        )
    check_imbalance(params.clean, task)


def check_imbalance(clean: CleanConfig, task: str) -> None:
    """Refuse an imbalance strategy that needs classes for a regression target.

    Raises:
        ValueError: Naming ``clean.imbalance`` and its value.
    """
    if task == "regression" and clean.imbalance in CLASS_ONLY_IMBALANCE:
        raise ValueError(
            f"clean.imbalance = {clean.imbalance!r} with a regression task: expected 'none' (downsampling, "
            "SMOTE and class weights need classes, which a regression target has not; the default 'upsample' is "
            "ignored for regression)"
        )


def require_task(params: Params, task: str) -> None:
    """:func:`check_task` for a stage, once the task is known: a :class:`PipelineError` naming params.yaml."""
    try:
        check_task(params, task)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: {exc}") from None


def require_imbalance(clean: CleanConfig, task: str) -> None:
    """:func:`check_imbalance` for the clean stage, which reads only its own section: the task ingest inferred
    (``data.task: auto``) is known there, so a class-only strategy stops the pipeline before any training."""
    try:
        check_imbalance(clean, task)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: {exc}") from None


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """Turn one pydantic error into 'key = value: expected ...'."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        model: Any = root
        for part in loc[:-1]:
            model = model.model_fields[part].annotation
        allowed = ", ".join(model.model_fields)
        return f"{key}: unknown key; expected one of: {allowed}"
    if kind == "missing":
        return f"{key}: missing key"
    message = error["msg"]
    if message.startswith("Value error, "):  # our own cross-field checks already name their keys
        return message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    message = message.replace("input should be", "expected").replace("input should have", "expected")
    # in YAML terms: a list, not a tuple; text, not a string; a mapping, not an instance of a Python class
    message = message.replace("string should match pattern", "expected text matching the pattern")
    message = message.replace("string should have", "expected")
    message = message.replace("a valid tuple", "a list")
    message = re.sub(r" or instance of \w+$", "", message)
    return f"{key} = {error['input']!r}: {message}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping.

    Args:
        raw: The YAML document as Python objects.
        source: The file name to put in error messages.

    Returns:
        The frozen, typed params.

    Raises:
        PipelineError: On any unknown key, wrong type, out-of-range or contradictory value.
    """
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, Params) for err in exc.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PipelineError(f"{source}: {problems[0]}{more}") from None


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``.

    Args:
        path: The params file; DVC runs stages from the project root, where ``params.yaml`` lives.

    Raises:
        PipelineError: If the file is missing, is not YAML, or does not match the schema.
    """
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: expected a readable UTF-8 text file ({exc})") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: expected valid YAML, got a syntax error ({' '.join(str(exc).split())})") from None
    return parse_params(raw, str(path))


def flatten(params: Params) -> dict[str, Any]:
    """Flatten params to dotted keys, as DVC names them (``train.lr``), for logging to MLflow."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            out[prefix] = list(value) if isinstance(value, tuple) else value

    walk("", params.model_dump())
    return out
