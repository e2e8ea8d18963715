"""The typed schema of ``params.yaml``: parsed once, validated whole, frozen.

Every knob lives in ``params.yaml``; this package only says which keys exist, their types and their allowed
ranges. A bad file stops the stage with one line that names the key, the value and what is allowed. The
sections are in :mod:`pipeline.config.data`, :mod:`pipeline.config.training` and :mod:`pipeline.config.tune` (read
by the tune and cv commands only); this module holds the whole file (:class:`Params`), the checks that span
sections, and the parsing.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidatorFunctionWrapHandler, model_validator

from pipeline.config.auto import BY_TASK, settle
from pipeline.config.base import Section
from pipeline.config.data import (
    AlongTimeFill, ClassOnlyImbalance, CleanConfig, DataConfig, Imbalance, RowFill, ScaleConfig, SplitConfig,
)
from pipeline.config.training import (
    ClassificationMetric, EvaluateConfig, ModelConfig, RegressionMetric, TrackingConfig, TrainConfig,
)
from pipeline.config.tune import TuneConfig
from pipeline.errors import PipelineError

# what stages import from here: the whole file and each section's type (each section is defined in its module)
__all__ = [
    "DEFAULT_PARAMS", "CleanConfig", "DataConfig", "EvaluateConfig", "ModelConfig", "Params", "ScaleConfig",
    "SplitConfig", "TrackingConfig", "TrainConfig", "TuneConfig", "check_imbalance", "check_task", "flatten", "load_params",
    "parse_params", "read_raw_params", "read_yaml", "require_imbalance", "require_task", "resolve", "resolved_autos",
]

DEFAULT_PARAMS = Path("params.yaml")


class Params(Section):
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
    tune: TuneConfig | None = None  # read by python -m pipeline tune / cv only (pipeline.config.tune.require_tune)
    # the dotted keys whose 'auto' the modality settled, and what they became (ingest prints them)
    _settled: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _settle_by_modality(cls, raw: Any, handler: ValidatorFunctionWrapHandler) -> Params:
        # the modality follows from data.source and data.sequence alone: settle what depends on it before the
        # checks below see the values (a data section that does not validate is reported by the handler)
        settled: dict[str, Any] = {}
        if isinstance(raw, dict):
            try:
                modality = DataConfig.model_validate(raw.get("data")).modality
            except ValidationError:
                modality = None
            if modality is not None:
                raw, settled = settle(raw, modality)
        params = handler(raw)
        params._settled.update(settled)
        return params

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
        if self.clean.numeric in get_args(AlongTimeFill) and modality != "sequence":
            raise ValueError(
                f"clean.numeric = {self.clean.numeric!r} with {modality} data: expected one of {get_args(RowFill)} "
                "(filling along time needs data.sequence)"
            )
        if self.clean.imbalance == "smote" and modality == "sequence":
            raise ValueError(
                f"clean.imbalance = 'smote' with sequence data: expected one of "
                f"{tuple(s for s in get_args(Imbalance) if s != 'smote')} (SMOTE interpolates fixed-width rows, not "
                "series of different lengths)"
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


AUTO = BY_TASK  # what each task-dependent 'auto' becomes (pipeline.config.auto says why)


def check_task(params: Params, task: str) -> None:
    """Refuse settings that only make sense for the other task (``auto`` values fit either).

    Raises:
        ValueError: Naming the key, its value and what the task allows (pydantic turns it into a message;
            stages call it through :func:`require_task`).
    """
    metrics = get_args(ClassificationMetric if task == "classification" else RegressionMetric)
    if params.evaluate.primary_metric not in ("auto", *metrics):
        raise ValueError(
            f"evaluate.primary_metric = {params.evaluate.primary_metric!r} with a {task} task: expected 'auto' or "
            f"one of {metrics}"
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
    if task == "regression" and clean.imbalance in get_args(ClassOnlyImbalance):
        raise ValueError(
            f"clean.imbalance = {clean.imbalance!r} with a regression task: expected 'auto' or 'none' (resampling "
            "and class weights need classes, which a regression target has not)"
        )


def resolve_clean(clean: CleanConfig, task: str) -> CleanConfig:
    """``clean`` with ``imbalance: auto`` replaced by the task's choice (:data:`AUTO`)."""
    if clean.imbalance != "auto":
        return clean
    return clean.model_copy(update={"imbalance": AUTO[task]["clean.imbalance"]})


def resolve(params: Params, task: str) -> Params:
    """``params`` with every ``auto`` that depends on the task replaced by the task's choice (:data:`AUTO`).

    The copy is not validated again: the values come from :data:`AUTO`, which fits its task.
    """
    evaluate = params.evaluate
    if evaluate.primary_metric == "auto":
        evaluate = evaluate.model_copy(update={"primary_metric": AUTO[task]["evaluate.primary_metric"]})
    return params.model_copy(update={"evaluate": evaluate, "clean": resolve_clean(params.clean, task)})


def resolved_autos(params: Params, task: str) -> dict[str, Any]:
    """The dotted keys set to ``auto`` in params.yaml and what each became: by the modality, then for ``task``
    (printed by ingest)."""
    flat = flatten(params)
    # the CNN's settings only matter to a CNN
    settled = {k: v for k, v in params._settled.items() if params.model.kind == "cnn" or not k.startswith("model.cnn.")}
    return {**settled, **{key: value for key, value in AUTO[task].items() if flat[key] == "auto"}}


def require_task(params: Params, task: str) -> Params:
    """:func:`check_task` for a stage, once the task is known, then :func:`resolve`.

    Returns:
        The params with their ``auto`` values resolved for ``task``.

    Raises:
        PipelineError: Naming params.yaml, the key and its value.
    """
    try:
        check_task(params, task)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: {exc}") from None
    return resolve(params, task)


def require_imbalance(clean: CleanConfig, task: str) -> CleanConfig:
    """:func:`check_imbalance` for the clean stage, which reads only its own section: the task ingest inferred
    (``data.task: auto``) is known there, so a class-only strategy stops the pipeline before any training.

    Returns:
        ``clean`` with ``imbalance: auto`` resolved for ``task``.
    """
    try:
        check_imbalance(clean, task)
    except ValueError as exc:
        raise PipelineError(f"params.yaml: {exc}") from None
    return resolve_clean(clean, task)


def _one_per_key(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors with the branch of a union (``int | 'auto'``) taken out of each location, and only the
    first error per key: a 0 where ``kernel`` takes a positive number or 'auto' is one mistake, best named by the
    number's rule, not also by "expected 'auto'"."""
    seen: dict[tuple, dict[str, Any]] = {}
    for error in errors:
        loc = tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in part and "-" not in part)
        key = loc[:-1] if loc and isinstance(loc[-1], int) else loc  # hidden[0] and hidden[1]: one key
        first = seen.setdefault(key, {**error, "loc": loc})
        # text where a number or 'auto' goes: both are what was expected
        if error["type"] == "literal_error" and first["type"].endswith(("_type", "_parsing")):
            seen[key] = {**first, "msg": f"{first['msg']} or {error['ctx']['expected']}"}
    return list(seen.values())


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    """The section a location leads to, through optional sections (``tune``) and mappings (``tune.space``)."""
    model: Any = root
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            model = model.model_fields[part].annotation
        else:  # a mapping's key: on to its values
            model = get_args(model)[-1]
        if get_origin(model) in (typing.Union, types.UnionType):  # X | None
            model = next(arg for arg in get_args(model) if arg is not type(None))
    return model


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """Turn one pydantic error into 'key = value: expected ...'."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
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


# keys that once lived elsewhere, by old dotted name: a file that still sets one is told where it went, in one line,
# instead of an unknown key and a missing one
MOVED_KEYS = {"evaluate.ensemble": "train.ensemble"}  # read by train, which decides what models/model holds


def _refuse_moved(raw: dict[str, Any], source: str) -> None:
    """Stop on the first key of :data:`MOVED_KEYS` that ``raw`` still sets.

    Raises:
        PipelineError: Naming the old key and the new one.
    """
    for old, new in MOVED_KEYS.items():
        *sections, leaf = old.split(".")
        node: Any = raw
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            raise PipelineError(f"{source}: {old}: moved to {new} (set it there)")


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping.

    Args:
        raw: The YAML document as Python objects.
        source: The file name to put in error messages.

    Returns:
        The frozen, typed params.

    Raises:
        PipelineError: On a key that moved (:data:`MOVED_KEYS`), any unknown key, wrong type, out-of-range or
            contradictory value.
    """
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    _refuse_moved(raw, source)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, Params) for err in _one_per_key(exc.errors())]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PipelineError(f"{source}: {problems[0]}{more}") from None


def read_yaml(path: Path, what: str) -> Any:
    """Read a YAML file as DVC does (YAML 1.2 numbers), in one line naming it when it cannot be read.

    Args:
        path: The file.
        what: What the file should be, for the messages ("a params file").

    Returns:
        The document as Python objects (``None`` for an empty file).

    Raises:
        PipelineError: If the path is missing or a directory, the file is not UTF-8 text, or not YAML.
    """
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found (expected {what})") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: expected {what}, got a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PipelineError(f"{path}: expected {what} readable as UTF-8 text ({reason})") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: expected valid YAML, got a syntax error ({_yaml_problem(exc)})") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint as one line: where and what (its own text spans lines and names "<unicode string>")."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def read_raw_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read a params file as the mapping it holds, not yet validated (presets overlay their keys on it).

    Raises:
        PipelineError: As :func:`read_yaml`, or if the file holds something other than a mapping.
    """
    raw = read_yaml(path, "a params file")
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``.

    Args:
        path: The params file; DVC runs stages from the project root, where ``params.yaml`` lives.

    Raises:
        PipelineError: If the file is missing, a directory, not YAML, or does not match the schema.
    """
    return parse_params(read_raw_params(path), str(path))


def flatten(params: Params) -> dict[str, Any]:
    """Flatten params to dotted keys, as DVC names them (``train.lr``), for logging to MLflow (``tune`` left
    out)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            out[prefix] = list(value) if isinstance(value, tuple) else value

    # the tune section configures searches, not a run: it is no run's param and no part of its name
    walk("", params.model_dump(exclude={"tune"}))
    return out
