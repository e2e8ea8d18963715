"""The search space (``tune.space``): which params.yaml keys a trial varies, checked against the schema, and how
Optuna suggests, records and enumerates their values.

A trial is the base params.yaml with some dotted keys set (:func:`trial_params`), validated by the same schema as
any run, so a bad value or combination is refused with the schema's own message. Optuna's categorical values are
limited to None, bool, int, float and str: a list choice (``model.hidden``) goes to Optuna as its JSON text and
comes back decoded, so ``trial.params`` reads ``"[64, 32]"`` and the values a trial trains with hold ``[64, 32]``.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import types
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, get_args, get_origin

from pydantic import BaseModel

from pipeline.config import Params, check_task, flatten, parse_params
from pipeline.config.auto import BY_MODALITY
from pipeline.config.tune import Dimension, require_tune
from pipeline.errors import PipelineError
from pipeline.presets import dvc_set_args, overlay

if TYPE_CHECKING:
    import optuna

# keys no trial may vary (a dotted prefix ends in '.'), and why
FIXED: tuple[tuple[str, str], ...] = (
    ("seed", "restarts and the sampler's seed come from it"),
    ("data.", "it changes what the data are, so trials would not compare"),
    ("split.", "it changes what validation is, so trials would not compare"),
    ("evaluate.", "evaluate scores the adopted model on test; a search chooses on validation"),
    ("tracking.", "where runs are recorded, not what they learn"),
    ("tune.", "the search's own settings"),
    ("train.accelerator", "where it runs, not what it learns"),
    ("train.devices", "where it runs, not what it learns"),
    ("train.num_nodes", "where it runs, not what it learns"),
    ("train.strategy", "where it runs, not what it learns"),
    ("train.cpu_threads", "where it runs, not what it learns"),
    ("train.eval_chunk", "it bounds memory, not results"),
    ("train.checkpoint_every", "when training saves, not what it learns"),
    ("train.lr_find", "it reports a learning rate, the run does not use it"),
)


class UsedWhen(NamedTuple):
    """A key (or dotted prefix) read only when another key takes one of some values."""

    prefix: str
    control: str
    values: tuple[Any, ...]
    off: Any = None  # what a trial sets the key to when it is not read (None: params.yaml's value stays)


# what reads each conditional key (pipeline.nets, pipeline.training, pipeline.preprocess); a searched key must be
# read by the base configuration or by one the space can reach, else its trials differ in nothing
USED_WHEN: tuple[UsedWhen, ...] = (
    UsedWhen("model.cnn.", "model.kind", ("cnn",)),
    UsedWhen("model.rnn.", "model.kind", ("rnn",)),
    UsedWhen("train.momentum", "train.optimizer", ("sgd", "nesterov", "rmsprop"), 0.0),  # others refuse > 0
    UsedWhen("train.schedule.step_size", "train.schedule.kind", ("step",)),
    UsedWhen("train.schedule.gamma", "train.schedule.kind", ("step", "plateau")),
    UsedWhen("train.schedule.patience", "train.schedule.kind", ("plateau",)),
    UsedWhen("train.schedule.warmup_epochs", "train.schedule.kind", ("step", "cosine"), 0),  # others refuse > 0
    UsedWhen("train.gradient_clip.max", "train.gradient_clip.mode", ("norm", "value")),
    UsedWhen("train.last_batch", "train.update", ("mini_batch",)),  # full batch and one row leave nothing over
    UsedWhen("clean.knn_", "clean.numeric", ("knn",)),
    UsedWhen("clean.smote_neighbors", "clean.imbalance", ("smote",)),
    UsedWhen("clean.fill_value", "clean.numeric", ("constant",)),
    UsedWhen("clean.fill_category", "clean.categorical", ("constant",)),
)
CONTROLS = frozenset(rule.control for rule in USED_WHEN)
# keys read for one task only
TASK_KEYS: dict[str, str] = {"train.regression_loss": "regression", "train.label_smoothing": "classification"}
MAX_COMBINATIONS = 256  # other keys' settings tried before a value is refused as fitting none of them


def _bases(annotation: Any) -> list[Any]:
    """The types a field's annotation admits, through ``Annotated`` and unions."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _bases(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [base for arg in get_args(annotation) for base in _bases(arg)]
    return [annotation]


def _leaves(model: type[BaseModel] = Params, prefix: str = "") -> dict[str, Any]:
    """Every dotted leaf key of the schema (``tune`` left out) and its annotation."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if not prefix and name == "tune":
            continue
        sections = [base for base in _bases(field.annotation) if isinstance(base, type) and issubclass(base, BaseModel)]
        if sections:
            out.update(_leaves(sections[0], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = field.annotation
    return out


LEAVES = _leaves()


def number_kind(key: str) -> Literal["int", "float"] | None:
    """``int`` or ``float`` when the schema takes a number at ``key`` (besides words such as 'auto'), else None."""
    bases = _bases(LEAVES[key])
    if float in bases:
        return "float"
    return "int" if int in bases else None


def _rule(key: str) -> UsedWhen | None:
    return next((rule for rule in USED_WHEN if key.startswith(rule.prefix)), None)


def _encode(choice: Any) -> Any:
    """A choice as Optuna can store it: lists and mappings as their JSON text."""
    return json.dumps(choice) if isinstance(choice, (list, tuple, dict)) else choice


def _decode_one(dimension: Dimension, stored: Any) -> Any:
    if dimension.choices is None:
        return stored
    by_code = {json.dumps(_encode(c)): c for c in dimension.choices}
    return by_code.get(json.dumps(stored), stored)


def _read(key: str, values: dict[str, Any]) -> bool:
    """Whether ``key`` is read given the controls that ``values`` set (an unset control: the base reads it)."""
    rule = _rule(key)
    return rule is None or rule.control not in values or values[rule.control] in rule.values


def _with_offs(space: dict[str, Dimension], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each searched key that the values' controls leave unread at its off value, or left out."""
    out = dict(values)
    for key in space:
        rule = _rule(key)
        if rule is not None and not _read(key, values):
            if rule.off is None:
                out.pop(key, None)
            else:
                out[key] = rule.off
    return out


def suggest(trial: optuna.Trial, space: dict[str, Dimension]) -> dict[str, Any]:
    """The trial's values, by dotted key (a space that :func:`check_space` accepted).

    Controls (``model.kind``, ``train.optimizer``, ...) are suggested first; a key they leave unread is not
    suggested, and takes its off value when it has one (``train.momentum``: 0 with adam).

    Returns:
        Each key's value as params.yaml holds it: ints for int keys, lists for list choices.
    """
    values: dict[str, Any] = {}
    for key in sorted(space, key=lambda k: k not in CONTROLS):  # stable: controls first, else in order
        dimension = space[key]
        if not _read(key, values):
            continue
        if dimension.choices is not None:
            stored = trial.suggest_categorical(key, [_encode(c) for c in dimension.choices])
            values[key] = _decode_one(dimension, stored)
        elif number_kind(key) == "int":
            step = int(dimension.step or 1)
            values[key] = trial.suggest_int(key, int(dimension.low), int(dimension.high), step=step, log=dimension.log)
        else:
            values[key] = trial.suggest_float(key, dimension.low, dimension.high, step=dimension.step,
                                              log=dimension.log)
    return _with_offs(space, values)


def decode(space: dict[str, Dimension], optuna_params: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's values from its Optuna params (``FrozenTrial.params``), as :func:`suggest` returned them."""
    values = {key: _decode_one(space[key], stored) for key, stored in optuna_params.items() if key in space}
    return _with_offs(space, values)


def base_point(space: dict[str, Dimension], params: Params) -> dict[str, Any]:
    """params.yaml's own value of each searched key that the space holds, as Optuna stores it: the search's first
    trial, so a search never reports a best worse than the configuration it started from. A key whose value the
    space does not hold (``auto``, a value out of range) is left to the sampler.
    """
    from pipeline.config import flatten

    flat, point = flatten(params), {}
    for key, dimension in space.items():
        value = flat.get(key)
        if dimension.choices is not None:
            codes = [_encode(c) for c in dimension.choices]
            if _encode(value) in codes:
                point[key] = _encode(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and dimension.low <= value <= dimension.high:
            on_step = dimension.step is None or abs(round((value - dimension.low) / dimension.step)
                                                    * dimension.step + dimension.low - value) < 1e-12
            if on_step:
                point[key] = int(value) if number_kind(key) == "int" else float(value)
    return point


def grid(space: dict[str, Dimension]) -> dict[str, list[Any]]:
    """The search space of Optuna's ``GridSampler``: each key's choices (encoded) or its range's steps.

    Raises:
        PipelineError: On a range without a step.
    """
    out: dict[str, list[Any]] = {}
    for key, dimension in space.items():
        if dimension.choices is not None:
            out[key] = [_encode(c) for c in dimension.choices]
            continue
        if dimension.step is None:
            raise PipelineError("params.yaml: tune.sampler = 'grid': expected choices or a step for every key of "
                                f"tune.space, got a continuous range for {key}")
        count = math.floor((dimension.high - dimension.low) / dimension.step + 1e-9) + 1
        points = [dimension.low + i * dimension.step for i in range(count)]
        out[key] = [round(p) for p in points] if number_kind(key) == "int" else [round(p, 12) for p in points]
    return out


def trial_params(raw: dict[str, Any], values: dict[str, Any], source: str) -> Params:
    """The base params with each dotted key of ``values`` set, validated by the schema.

    Args:
        raw: The params.yaml mapping (not changed).
        values: Dotted key -> value.
        source: What to name in a refusal ("tune trial 7").

    Raises:
        PipelineError: "``source``: <the schema's message>", for a key params.yaml lacks or a bad combination.
    """
    return parse_params(overlay(raw, values, source), source)


def set_args(values: dict[str, Any]) -> list[str]:
    """The ``-S key=value`` arguments that adopt ``values`` through ``dvc exp run``."""
    return dvc_set_args(values)


def check_space(raw: dict[str, Any], params: Params, task: str | None = None) -> None:
    """Refuse a ``tune.space`` whose trials would break, not compare, or differ in nothing.

    Args:
        raw: The params.yaml mapping ``params`` was parsed from (each value is tried on it).
        params: The parsed params; their ``tune.space`` is checked.
        task: ``classification`` or ``regression`` once known; None: ``data.task``, and task rules are skipped
            while that is ``auto``.

    Raises:
        PipelineError: One line naming ``tune.space.<key>``: a key the schema lacks (with close ones), one no trial
            may vary (:data:`FIXED`), a range on a key that takes no number, a fraction for an int key, a key the
            configuration never reads (:data:`USED_WHEN`, :data:`TASK_KEYS`), or a value no configuration in the
            space admits (the schema's message).
    """
    space = require_tune(params).space
    task = task or (None if params.data.task == "auto" else params.data.task)
    for key, dimension in space.items():
        _check_key(key, dimension)
    for key in space:
        _check_read(key, space, params, task)
    for key, dimension in space.items():
        _check_values(raw, key, dimension, space, task)


def _check_key(key: str, dimension: Dimension) -> None:
    """Refuse an unknown or fixed key, and a range the key's type cannot take."""
    fixed = next((why for prefix, why in FIXED if key == prefix or prefix.endswith(".") and key.startswith(prefix)),
                 None)
    if fixed is not None and (key in LEAVES or key.startswith("tune.")):
        raise PipelineError(f"tune.space.{key}: expected a key a trial may vary, got one a search keeps fixed ({fixed})")
    if key not in LEAVES:
        close = difflib.get_close_matches(key, LEAVES, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "for example train.lr or model.dropout"
        raise PipelineError(f"tune.space.{key}: unknown key; expected a dotted params.yaml key ({hint})")
    kind = number_kind(key)
    if dimension.is_range and kind is None:
        raise PipelineError(f"tune.space.{key}: a range {{low, high}}: expected {{choices: [...]}} ({key} takes no "
                            "number)")
    if kind == "int":
        for name in ("low", "high", "step"):
            value = getattr(dimension, name)
            if value is not None and value != int(value):
                raise PipelineError(f"tune.space.{key}: {name} = {value:g}: expected a whole number ({key} takes "
                                    "integers)")


def _possible(control: str, space: dict[str, Dimension], flat: dict[str, Any], modality: str) -> set[Any]:
    """The values ``control`` can take in the search: its choices when searched, else the base value."""
    values = list(space[control].choices or ()) if control in space else [flat[control]]
    settle = BY_MODALITY.get(control, {})  # 'auto' among the choices becomes what the modality settles
    return {settle[modality] if v == "auto" and settle else json.dumps(v) if isinstance(v, list) else v
            for v in values}


def _check_read(key: str, space: dict[str, Dimension], params: Params, task: str | None) -> None:
    """Refuse a key that no configuration the space reaches reads."""
    flat = flatten(params)
    rule = _rule(key)
    if rule is not None and not _possible(rule.control, space, flat, params.data.modality) & set(rule.values):
        setting = (f"searched over {list(space[rule.control].choices or ())}" if rule.control in space
                   else f"= {flat[rule.control]!r}")
        raise PipelineError(f"tune.space.{key}: not read with {rule.control} {setting}: expected {rule.control} to "
                            f"be, or be searched over, one of {rule.values}")
    if task is not None and TASK_KEYS.get(key, task) != task:
        raise PipelineError(f"tune.space.{key}: not read with a {task} task: expected a {TASK_KEYS[key]} task")


def _check_values(raw: dict[str, Any], key: str, dimension: Dimension, space: dict[str, Dimension],
                  task: str | None) -> None:
    """Refuse a choice or bound that no setting of the other searched keys makes valid (the schema's message)."""
    for value in _values(key, dimension):
        first: PipelineError | None = None
        others = [[(other, v) for v in _values(other, space[other])] for other in space if other != key]
        for combination in itertools.islice(itertools.product(*others), MAX_COMBINATIONS):
            assignment = {**dict(combination), key: value}
            if not _read(key, assignment):  # a setting where the key is not read says nothing of its value
                continue
            assignment = {**_with_offs(space, assignment), key: value}
            try:
                _valid(raw, assignment, f"tune.space.{key}", task)
                break
            except PipelineError as exc:
                first = first or exc
        else:
            if first is not None:
                raise first from None


def _values(key: str, dimension: Dimension) -> list[Any]:
    """A dimension's choices, or its bounds (ints for an int key)."""
    if dimension.choices is not None:
        return list(dimension.choices)
    bounds = [dimension.low, dimension.high]
    return [int(b) for b in bounds] if number_kind(key) == "int" else bounds


def _valid(raw: dict[str, Any], values: dict[str, Any], source: str, task: str | None) -> Params:
    """:func:`trial_params`, and the task's own checks once the task is known."""
    params = trial_params(raw, values, source)
    if task is not None:
        try:
            check_task(params, task)
        except ValueError as exc:
            raise PipelineError(f"{source}: {exc}") from None
    return params
