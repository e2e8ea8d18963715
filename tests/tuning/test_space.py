"""tune.space: which keys a search may vary, and Optuna's suggestions decoded back to params.yaml values."""

from __future__ import annotations

import copy
from typing import Any

import optuna
import pytest

from pipeline.config import _Loader, parse_params, read_raw_params
from pipeline.config.tune import require_tune
from pipeline.errors import PipelineError
from pipeline.tuning.space import (
    FIXED, LEAVES, USED_WHEN, check_space, decode, grid, number_kind, set_args, suggest, trial_params,
)
from tests.conftest import PARAMS_FILE

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _doc(raw: dict[str, Any], space: dict[str, Any], **base: Any) -> dict[str, Any]:
    """``raw`` with ``space`` searched and each ``section__key=value`` of ``base`` set."""
    out = copy.deepcopy(raw)
    out["tune"]["space"] = space
    for name, value in base.items():
        section, key = name.split("__")
        out[section][key] = value
    return out


def _check(raw: dict[str, Any], space: dict[str, Any], task: str | None = None, **base: Any) -> None:
    doc = _doc(raw, space, **base)
    check_space(doc, parse_params(doc), task)


def test_the_repository_space_fits_the_default_params(default_params: dict[str, Any]) -> None:
    check_space(default_params, parse_params(default_params))
    check_space(default_params, parse_params(default_params), "classification")


RANGE = {"low": 0.1, "high": 0.2}
REFUSED = [
    # (id, space, base changes, task, the exact message after "tune.space.")
    ("unknown", {"train.lrr": RANGE}, {}, None,
     "train.lrr: unknown key; expected a dotted params.yaml key (did you mean train.lr or train.l1 or train.lr_find?)"),
    ("unknown-far", {"zzz": RANGE}, {}, None, "zzz: unknown key; expected a dotted params.yaml key (for example "
     "train.lr or model.dropout)"),
    ("section", {"train.schedule": RANGE}, {}, None, None),
    ("seed", {"seed": {"choices": [1, 2]}}, {}, None, "seed: expected a key a trial may vary, got one a search keeps "
     "fixed (restarts and the sampler's seed come from it)"),
    ("data", {"data.target": {"choices": ["sex"]}}, {}, None, None),
    ("split", {"split.val": RANGE}, {}, None, "split.val: expected a key a trial may vary, got one a search keeps "
     "fixed (it changes what validation is, so trials would not compare)"),
    ("evaluate", {"evaluate.baseline_rows": {"choices": [10]}}, {}, None, None),
    ("tracking", {"tracking.register_model": {"choices": [False]}}, {}, None, None),
    ("tune", {"tune.trials": {"choices": [3]}}, {}, None, None),
    *[(where, {where: {"choices": [1]}}, {}, None, None) for where in
      ("train.accelerator", "train.devices", "train.num_nodes", "train.strategy", "train.cpu_threads")],
    ("range-on-words", {"train.optimizer": {"low": 1, "high": 2}}, {}, None,
     "train.optimizer: a range {low, high}: expected {choices: [...]} (train.optimizer takes no number)"),
    ("fraction-for-int", {"train.batch_size": {"low": 16.5, "high": 64}}, {}, None,
     "train.batch_size: low = 16.5: expected a whole number (train.batch_size takes integers)"),
    ("schema-choice", {"train.optimizer": {"choices": ["adam", "lbfgs"]}}, {}, None,
     "train.optimizer: train.optimizer = 'lbfgs': expected 'sgd', 'nesterov', 'adam', 'adamw' or 'rmsprop'"),
    ("schema-bound", {"train.lr": {"low": 1e-3, "high": 20}}, {}, None,
     "train.lr: train.lr = 20.0: expected less than or equal to 10"),
    ("schema-combination", {"train.optimizer": {"choices": ["adam", "nesterov"]}}, {}, None,
     "train.optimizer: train.optimizer = 'nesterov' with train.momentum = 0: expected a momentum above 0"),
    ("schema-modality", {"model.kind": {"choices": ["fnn", "cnn"]}}, {}, None,
     "model.kind: model.kind = 'cnn' with tabular data: expected 'fnn' (convolutions and recurrences need images or "
     "sequences)"),
    ("task-imbalance", {"clean.imbalance": {"choices": ["none", "upsample"]}}, {}, "regression", None),
    ("cnn-with-fnn", {"model.cnn.channels": {"choices": [[8], [16]]}}, {}, None,
     "model.cnn.channels: not read with model.kind = 'fnn': expected model.kind to be, or be searched over, one of "
     "('cnn',)"),
    ("rnn-with-fnn", {"model.rnn.hidden_size": {"low": 8, "high": 64}}, {}, None, None),
    ("momentum-with-adam", {"train.momentum": {"low": 0.0, "high": 0.9}}, {}, None,
     "train.momentum: not read with train.optimizer = 'adam': expected train.optimizer to be, or be searched over, "
     "one of ('sgd', 'nesterov', 'rmsprop')"),
    ("momentum-searched-away", {"train.momentum": RANGE, "train.optimizer": {"choices": ["adam", "adamw"]}}, {},
     None, "train.momentum: not read with train.optimizer searched over ['adam', 'adamw']: expected train.optimizer "
     "to be, or be searched over, one of ('sgd', 'nesterov', 'rmsprop')"),
    ("momentum-bad-where-read", {"train.momentum": {"low": 0.0, "high": 1.5},
                                 "train.optimizer": {"choices": ["adam", "sgd"]}}, {}, None,
     "train.momentum: train.momentum = 1.5: expected less than 1"),
    ("step-size", {"train.schedule.step_size": {"low": 5, "high": 50}}, {}, None, None),
    ("gamma", {"train.schedule.gamma": RANGE}, {}, None, None),
    ("patience", {"train.schedule.patience": {"low": 2, "high": 9}}, {}, None, None),
    ("warmup", {"train.schedule.warmup_epochs": {"low": 0, "high": 5}}, {}, None, None),
    ("clip", {"train.gradient_clip.max": RANGE}, {}, None, None),
    ("last-batch-full", {"train.last_batch": {"choices": ["keep", "even"]}}, {"train__update": "full_batch"}, None,
     "train.last_batch: not read with train.update = 'full_batch': expected train.update to be, or be searched over, "
     "one of ('mini_batch',)"),
    ("knn", {"clean.knn_neighbors": {"low": 2, "high": 9}}, {}, None, None),
    ("smote", {"clean.smote_neighbors": {"low": 2, "high": 9}}, {}, None, None),
    ("fill-value", {"clean.fill_value": RANGE}, {}, None, None),
    ("fill-category", {"clean.fill_category": {"choices": ["gap"]}}, {}, None, None),
    ("regression-loss", {"train.regression_loss": {"choices": ["mse", "mae"]}}, {}, "classification",
     "train.regression_loss: not read with a classification task: expected a regression task"),
    ("label-smoothing", {"train.label_smoothing": RANGE}, {}, "regression",
     "train.label_smoothing: not read with a regression task: expected a classification task"),
]


@pytest.mark.parametrize(("space", "base", "task", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_bad_space_is_one_line_naming_the_key(default_params: dict[str, Any], space: dict[str, Any],
                                                base: dict[str, Any], task: str | None, message: str | None) -> None:
    with pytest.raises(PipelineError) as info:
        _check(default_params, space, task, **base)
    text = str(info.value)
    assert text.startswith(f"tune.space.{next(iter(space))}: ") and "\n" not in text
    if message is not None:
        assert text == f"tune.space.{message}"


ACCEPTED = [
    # (id, space, base changes, task): the key is read by the base or by a setting the space reaches
    ("cnn-when-kind-searched", {"model.kind": {"choices": ["cnn", "rnn"]}, "model.cnn.channels": {"choices": [[8]]},
                                "model.rnn.hidden_size": {"low": 8, "high": 32}},
     {"data__source": "digits", "data__target": "label"}, None),
    ("cnn-by-auto", {"model.cnn.channels": {"choices": [[8], [16, 16]]}}, {"data__source": "digits",
                                                                          "data__target": "label"}, None),
    ("momentum-with-sgd-searched", {"train.optimizer": {"choices": ["adam", "sgd"]}, "train.momentum": RANGE}, {},
     None),
    ("momentum-with-sgd", {"train.momentum": RANGE}, {"train__optimizer": "sgd"}, None),
    ("nesterov-with-momentum-searched", {"train.optimizer": {"choices": ["adam", "nesterov"]},
                                         "train.momentum": {"low": 0.5, "high": 0.9}}, {}, None),
    ("regression-loss-unknown-task", {"train.regression_loss": {"choices": ["mse", "mae"]}}, {}, None),
    ("int-key", {"train.batch_size": {"low": 16, "high": 128, "log": True}}, {}, None),
    ("last-batch", {"train.last_batch": {"choices": ["keep", "even", "drop"]}}, {}, None),
    ("knn-searched", {"clean.numeric": {"choices": ["median", "knn"]}, "clean.knn_neighbors": {"low": 2, "high": 9}},
     {}, None),
]


@pytest.mark.parametrize(("space", "base", "task"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_a_space_a_configuration_reads_is_accepted(default_params: dict[str, Any], space: dict[str, Any],
                                                   base: dict[str, Any], task: str | None) -> None:
    _check(default_params, space, task, **base)


def test_every_rule_names_schema_keys() -> None:
    for rule in USED_WHEN:
        assert rule.control in LEAVES and any(k.startswith(rule.prefix) for k in LEAVES), rule
    for prefix, _ in FIXED:
        assert prefix == "tune." or any(k == prefix or k.startswith(prefix) for k in LEAVES), prefix
    assert (number_kind("train.batch_size"), number_kind("train.weight_decay"), number_kind("train.optimizer")) == (
        "int", "float", None)


def _space(default_params: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    return require_tune(parse_params(_doc(default_params, space))).space


SPACE = {
    "train.lr": {"low": 1e-4, "high": 0.1, "log": True},
    "train.batch_size": {"low": 8, "high": 128, "log": True},
    "model.hidden": {"choices": [[64, 32], [128, 64], [256, 128, 64]]},
    "clean.imbalance": {"choices": ["none", "upsample"]},
}


def test_suggest_stays_in_bounds_gives_ints_and_decodes_lists(default_params: dict[str, Any]) -> None:
    space = _space(default_params, SPACE)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=optuna.samplers.RandomSampler(0))
    for _ in range(20):
        trial = study.ask()
        values = suggest(trial, space)
        assert 1e-4 <= values["train.lr"] <= 0.1 and isinstance(values["train.lr"], float)
        assert 8 <= values["train.batch_size"] <= 128 and type(values["train.batch_size"]) is int
        assert values["model.hidden"] in ([64, 32], [128, 64], [256, 128, 64])
        assert trial.params["model.hidden"] == str(values["model.hidden"])  # Optuna stores the JSON text
        study.tell(trial, values["train.lr"])
        assert decode(space, study.trials[-1].params) == values
        trial_params(default_params, values, "tune trial 1")  # every suggestion is a valid configuration


def test_an_unread_key_is_not_suggested_and_takes_its_off_value(default_params: dict[str, Any]) -> None:
    space = _space(default_params, {"train.momentum": RANGE, "train.optimizer": {"choices": ["adam", "sgd"]}})
    doc = _doc(default_params, {"train.lr": RANGE}, train__momentum=0.5, train__optimizer="sgd")
    adam = suggest(optuna.trial.FixedTrial({"train.optimizer": "adam"}), space)
    assert adam == {"train.optimizer": "adam", "train.momentum": 0.0}
    sgd = suggest(optuna.trial.FixedTrial({"train.optimizer": "sgd", "train.momentum": 0.15}), space)
    assert sgd == {"train.optimizer": "sgd", "train.momentum": 0.15}
    assert decode(space, {"train.optimizer": "adam"}) == adam
    assert trial_params(doc, adam, "tune trial 0").train.momentum == 0.0  # params.yaml's 0.5 would be refused


def test_grid_enumerates_choices_and_stepped_ranges(default_params: dict[str, Any]) -> None:
    space = _space(default_params, {"model.dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
                                    "train.batch_size": {"low": 16, "high": 64, "step": 16},
                                    "model.hidden": {"choices": [[8], [16, 8]]}})
    assert grid(space) == {"model.dropout": [0.0, 0.1, 0.2, 0.3], "train.batch_size": [16, 32, 48, 64],
                           "model.hidden": ["[8]", "[16, 8]"]}
    sampler = optuna.samplers.GridSampler(grid(space), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: suggest(t, space)["model.dropout"], n_trials=32)
    seen = {(t.params["model.dropout"], t.params["train.batch_size"], t.params["model.hidden"]) for t in study.trials}
    assert len(seen) == 32


def test_grid_refuses_a_continuous_range(default_params: dict[str, Any]) -> None:
    space = _space(default_params, {"model.hidden": {"choices": [[8]]}, "train.lr": {"low": 1e-3, "high": 0.1}})
    with pytest.raises(PipelineError) as info:
        grid(space)
    assert str(info.value) == ("params.yaml: tune.sampler = 'grid': expected choices or a step for every key of "
                               "tune.space, got a continuous range for train.lr")


def test_trial_params_sets_dotted_keys_without_changing_the_base(default_params: dict[str, Any]) -> None:
    before = copy.deepcopy(default_params)
    params = trial_params(default_params, {"train.lr": 0.003, "model.hidden": [16, 8]}, "tune trial 3")
    assert (params.train.lr, params.model.hidden) == (0.003, (16, 8))
    assert default_params == before


def test_trial_params_refuses_a_bad_combination_naming_the_source(default_params: dict[str, Any]) -> None:
    with pytest.raises(PipelineError) as info:
        trial_params(default_params, {"train.optimizer": "adam", "train.momentum": 0.9}, "tune trial 7")
    assert str(info.value) == ("tune trial 7: train.momentum = 0.9 with train.optimizer = 'adam': expected momentum 0 "
                               "unless the optimizer is 'sgd', 'nesterov' or 'rmsprop'")


def test_set_args_read_back_as_the_same_values() -> None:
    import yaml

    values = {"train.lr": 1.234e-05, "model.hidden": [128, 64], "clean.imbalance": "none", "train.batch_size": 32,
              "model.dropout": 0.1, "model.bias": False}
    args = set_args(values)
    assert args[::2] == ["-S"] * len(values)
    pairs = dict(arg.split("=", 1) for arg in args[1::2])
    assert {key: yaml.load(text, Loader=_Loader) for key, text in pairs.items()} == values  # noqa: S506


def test_the_repository_file_is_the_fixture() -> None:
    assert read_raw_params(PARAMS_FILE)["tune"]["space"]["train.lr"] == {"low": 1e-4, "high": 0.1, "log": True}
