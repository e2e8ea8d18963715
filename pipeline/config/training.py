"""The training sections of ``params.yaml``: ``model``, ``train``, ``evaluate`` and ``tracking``.

Each knob's allowed values are declared once, as a ``Literal`` type below; the tables that map a value to what it
builds (an activation to its layer, an optimizer to its factory) are tested to have exactly these keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import PositiveInt, Section

NetKind = Literal["fnn", "cnn", "rnn"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"]
Init = Literal["default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]
Norm = Literal["none", "batch", "layer"]
Pool = Literal["max", "avg", "none"]
Cell = Literal["rnn", "lstm", "gru"]
Optimizer = Literal["sgd", "nesterov", "adam", "adamw", "rmsprop"]
ScheduleKind = Literal["none", "step", "cosine", "onecycle", "plateau"]
RegressionLoss = Literal["mse", "mae", "huber"]
Update = Literal["mini_batch", "full_batch", "stochastic"]
# what a mini-batch epoch does with rows left over after the full batches (pipeline.training.module.batch_starts)
LastBatch = Literal["keep", "even", "drop"]
Flip = Literal["none", "horizontal", "vertical", "both"]
# train.freeze: the layers held fixed in a network started from a registered version (pipeline.training.transfer)
Freeze = Literal["none", "encoder"]
# train.init_from: a version number, an alias, models:/<name>/<version> or models:/<name>@<alias>; the registry
# URI's parts are named for pipeline.serving.source, which parses the value with these same patterns
ALIAS = r"[A-Za-z0-9_-]+"
SOURCE_URI = rf"models:/(?P<name>[^/@\s]+)(?:/(?P<version>\d+)|@(?P<alias>{ALIAS}))"
SOURCE_PATTERN = rf"^(\d+|{ALIAS}|{SOURCE_URI})$"
ClassificationMetric = Literal["accuracy", "macro_f1"]
RegressionMetric = Literal["mae", "rmse", "r2"]
Metric = Literal[ClassificationMetric, RegressionMetric]
Baseline = Literal["dummy", "linear", "forest", "nearest"]


class CnnConfig(Section):
    """Convolution blocks (``model.kind: cnn``): Conv2d over images, Conv1d over time for sequences."""

    channels: Annotated[tuple[PositiveInt, ...], Field(strict=False, min_length=1)]
    kernel: PositiveInt | Literal["auto"]  # auto: 3 for images, 7 for sequences (pipeline.config.auto)
    stride: PositiveInt
    padding: Annotated[int, Field(ge=0)] | Literal["auto"]  # auto: kernel // 2 ("same")
    pool: Literal["auto", Pool]  # auto: max for images, none for sequences
    batch_norm: bool


class RnnConfig(Section):
    """The recurrent encoder (``model.kind: rnn``)."""

    cell: Cell
    hidden_size: PositiveInt
    layers: PositiveInt
    bidirectional: bool


class ModelConfig(Section):
    """The network architecture."""

    kind: Literal["auto", NetKind]  # auto: fnn for tables, cnn for images and sequences
    # YAML lists become tuples; auto: [64, 32] for fnn, none (no dense head) for cnn and rnn
    hidden: Annotated[tuple[PositiveInt, ...], Field(strict=False)] | Literal["auto"]
    activation: Activation
    init: Init
    bias: bool
    norm: Norm
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    cnn: CnnConfig
    rnn: RnnConfig


class EarlyStoppingConfig(Section):
    """Stop when the monitored validation metric stops improving."""

    monitor: Literal["val/loss", "val/acc", "val/mae"]
    mode: Literal["auto", "min", "max"]
    patience: PositiveInt | Literal["auto"]  # auto: by optimizer steps per epoch (pipeline.config.auto.budget)
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


class ScheduleConfig(Section):
    """The learning-rate schedule, with an optional linear warm-up (``step`` and ``cosine`` only)."""

    kind: ScheduleKind
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


class GradientClipConfig(Section):
    """Clip gradients before each optimizer step (a guard against exploding gradients)."""

    mode: Literal["none", "norm", "value"]
    max: Annotated[float, Field(gt=0.0)]


class AugmentConfig(Section):
    """Random changes to each training mini-batch (never to val or test), drawn from the seeded torch RNG."""

    flip: Flip  # images: mirror each with probability 0.5
    shift: Annotated[int, Field(ge=0)]  # images: translate by up to this many pixels per axis, zero-filled
    noise: Annotated[float, Field(ge=0.0)]  # any data: Gaussian noise of this std on the scaled features


class TrainConfig(Section):
    """Optimisation and hardware settings."""

    optimizer: Optimizer
    lr: Annotated[float, Field(gt=0.0, le=10.0)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    weight_decay: Annotated[float, Field(ge=0.0)] | Literal["auto"]  # auto: 1 / train rows (auto.budget)
    l1: Annotated[float, Field(ge=0.0)]
    schedule: ScheduleConfig
    gradient_clip: GradientClipConfig
    update: Update
    batch_size: PositiveInt
    last_batch: LastBatch
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)]
    regression_loss: RegressionLoss
    max_epochs: PositiveInt | Literal["auto"]  # auto: by optimizer steps per epoch (pipeline.config.auto.budget)
    early_stopping: EarlyStoppingConfig
    augment: AugmentConfig
    lr_find: bool
    restarts: Annotated[int, Field(ge=1, le=100)]  # networks trained from different seeds (seed, seed + 1, ...)
    ensemble: bool  # with restarts > 1: the model kept is the restarts' average, not the best single one
    # epochs between saves of last.ckpt (0: none); auto: every 500 optimizer steps' worth of epochs and at least 10
    # times over max_epochs (pipeline.config.auto.budget), so saving costs a few percent of a small table's training
    checkpoint_every: Annotated[int, Field(ge=0)] | Literal["auto"]
    accelerator: Literal["auto", "cpu", "gpu"]
    devices: PositiveInt
    num_nodes: PositiveInt
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"]
    precision: Literal["32-true", "bf16-mixed"]
    cpu_threads: PositiveInt
    # most examples per forward pass in validation, test, evaluate and predict (recorded in the model bundle): it
    # bounds their activations' memory, not their results (pipeline.nets.chunks)
    eval_chunk: PositiveInt
    # a registered version to start from (null: random weights), the layers held fixed, the epoch they train from
    # (null: never) and the loaded layers' rate as a share of lr (pipeline.training.transfer)
    init_from: int | str | None
    freeze: str | Annotated[tuple[str, ...], Field(strict=False)]
    unfreeze_epoch: PositiveInt | None
    loaded_lr_factor: Annotated[float, Field(gt=0.0, le=1.0)]

    @field_validator("init_from", mode="before")
    @classmethod
    def _init_from_names_a_version(cls, value: object) -> object:
        # before the type check: true, 0 or 'a/b' get this one line, not one per member of the union
        if value is not None and not (type(value) is int and value > 0 or
                                      isinstance(value, str) and re.match(SOURCE_PATTERN, value)):
            raise ValueError(f"train.init_from = {value!r}: expected null, a version number (1, 2, ...), an alias, "
                             "models:/<name>/<version> or models:/<name>@<alias>")
        return value

    @field_validator("freeze")
    @classmethod
    def _freeze_names_layers(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str) and value not in get_args(Freeze) or \
                isinstance(value, tuple) and (not value or not all(value)):
            raise ValueError(f"train.freeze = {list(value) if isinstance(value, tuple) else value!r}: expected "
                             f"{' or '.join(map(repr, get_args(Freeze)))}, or a list of layer-name prefixes "
                             "(e.g. [features.0.])")
        return value

    @model_validator(mode="after")
    def _finetuning_has_a_source(self) -> TrainConfig:
        if self.init_from is None:
            for key, value, idle in (("freeze", self.freeze, "none"), ("unfreeze_epoch", self.unfreeze_epoch, None),
                                     ("loaded_lr_factor", self.loaded_lr_factor, 1.0)):
                if value != idle:
                    raise ValueError(f"train.{key} = {value!r} with train.init_from = null: expected "
                                     f"{'null' if idle is None else repr(idle)} "
                                     "(nothing is loaded to hold or slow down; set train.init_from)")
        if self.unfreeze_epoch is not None and self.freeze == "none":
            raise ValueError(f"train.unfreeze_epoch = {self.unfreeze_epoch} with train.freeze = 'none': expected null "
                             "(nothing is frozen to release)")
        return self

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

    @model_validator(mode="after")
    def _ensemble_has_members(self) -> TrainConfig:
        if self.ensemble and self.restarts < 2:
            raise ValueError(
                f"train.ensemble = true with train.restarts = {self.restarts}: expected train.restarts of at least 2 "
                "(an ensemble averages several trained networks)"
            )
        return self

    @property
    def world_size(self) -> int:
        """Training processes: devices per node times nodes."""
        return self.devices * self.num_nodes

    def rows_per_step(self, n_rows: int) -> int:
        """Rows per optimizer step: all of them (full batch), ``batch_size`` (mini-batch) or 1 (stochastic)."""
        return {"full_batch": max(n_rows, 1), "mini_batch": self.batch_size, "stochastic": 1}[self.update]


class EvaluateConfig(Section):
    """Test-set evaluation."""

    primary_metric: Literal["auto", Metric]  # auto: by task
    baselines: Annotated[tuple[Baseline, ...], Field(strict=False)]
    baseline_rows: PositiveInt  # train rows the baselines fit on at most (a seeded sample beyond that)


class TrackingConfig(Section):
    """MLflow experiment and model-registry names.

    ``experiment: auto`` means the experiment is named after the dataset (the bundled name, or the file's stem);
    ``model_name: auto`` means the registered model is ``<dataset>-<model.kind>`` (for example ``penguins-fnn``).
    """

    experiment: str = Field(min_length=1)
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    register_model: bool
