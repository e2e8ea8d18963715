"""The params.yaml ``tune`` section: what parses, what is refused and how, and that no run sees it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.config import flatten, parse_params
from pipeline.config.tune import require_tune, tune_metric
from pipeline.errors import PipelineError


def _tune(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``doc`` with keys of its tune section replaced."""
    out = copy.deepcopy(doc)
    out["tune"].update(changes)
    return out


def test_the_repository_section_parses_to_its_values(default_params: dict[str, Any]) -> None:
    tune = require_tune(parse_params(default_params))
    assert (tune.trials, tune.timeout_minutes, tune.sampler, tune.pruner) == (30, None, "tpe", "median")
    assert (tune.objective, tune.metric, tune.folds) == ("val", "auto", 5)
    assert tune.space["train.lr"].low == 1e-4 and tune.space["train.lr"].log is True
    assert tune.space["model.hidden"].choices == ([64, 32], [128, 64], [256, 128, 64])
    assert not tune.space["model.hidden"].is_range and tune.space["model.dropout"].is_range


def test_the_section_is_optional_and_the_commands_say_it_is_missing(default_params: dict[str, Any]) -> None:
    doc = copy.deepcopy(default_params)
    del doc["tune"]
    params = parse_params(doc)
    assert params.tune is None
    with pytest.raises(PipelineError, match=r"^params.yaml: tune: missing section \(expected trials, "):
        require_tune(params)


def test_flatten_leaves_the_tune_section_out(default_params: dict[str, Any]) -> None:
    flat = flatten(parse_params(default_params))
    assert not [k for k in flat if k.startswith("tune")]
    doc = copy.deepcopy(default_params)
    del doc["tune"]
    assert flatten(parse_params(doc)) == flat  # a run's params and name are the same with or without it


BAD = [
    # (id, tune changes, the exact message)
    ("zero-trials", {"trials": 0}, "tune.trials = 0: expected greater than 0"),
    ("no-stop", {"trials": None, "timeout_minutes": None},
     "tune.trials = None with tune.timeout_minutes = None: expected a number of trials, a timeout or both (the "
     "search has to stop)"),
    ("sampler", {"sampler": "cmaes"}, "tune.sampler = 'cmaes': expected 'tpe', 'random' or 'grid'"),
    ("unknown-key", {"bogus": 1},
     "tune.bogus: unknown key; expected one of: trials, timeout_minutes, sampler, pruner, pruner_startup_trials, "
     "pruner_warmup_epochs, pruner_interval_epochs, objective, metric, folds, space"),
    ("negative-warmup", {"pruner_warmup_epochs": -1},
     "tune.pruner_warmup_epochs = -1: expected greater than or equal to 0"),
    ("metric", {"metric": "auc"}, "tune.metric = 'auc': expected 'auto', 'accuracy', 'macro_f1', 'mae', 'rmse' or 'r2'"),
    ("one-fold", {"folds": 1}, "tune.folds = 1: expected greater than or equal to 2"),
    ("bool-timeout", {"timeout_minutes": True}, "tune.timeout_minutes = True: expected a valid number"),
    ("empty-space", {"space": {}}, "tune.space = {}: expected at least one dotted params.yaml key to search"),
    ("dimension-key", {"space": {"train.lr": {"lo": 1, "high": 2}}},
     "tune.space.train.lr.lo: unknown key; expected one of: low, high, log, step, choices"),
    ("text-bound", {"space": {"train.lr": {"low": "x", "high": 1}}}, "tune.space.train.lr.low = 'x': expected a valid number"),
    ("low-above-high", {"space": {"train.lr": {"low": 1, "high": 0.1}}},
     "tune.space.train.lr: low = 1, high = 0.1: expected low <= high"),
    ("log-from-zero", {"space": {"train.lr": {"low": 0, "high": 0.1, "log": True}}},
     "tune.space.train.lr: log with low = 0: expected low > 0 (a log scale starts above 0)"),
    ("log-with-step", {"space": {"train.lr": {"low": 0.1, "high": 1, "log": True, "step": 0.1}}},
     "tune.space.train.lr: log with step = 0.1: expected one of them (Optuna steps a linear scale only)"),
    ("zero-step", {"space": {"train.lr": {"low": 0.1, "high": 0.2, "step": 0}}}, "tune.space.train.lr.step = 0: expected greater than 0"),
    ("empty-choices", {"space": {"model.hidden": {"choices": []}}}, "tune.space.model.hidden: choices = []: expected at least one choice"),
    ("choices-and-range", {"space": {"train.lr": {"choices": [0.1], "low": 0.2}}},
     "tune.space.train.lr: choices with low: expected either {low, high} or {choices}, not both"),
    ("half-range", {"space": {"train.lr": {"low": 0.1}}},
     "tune.space.train.lr: got {'low': 0.1}: expected {low, high[, log][, step]} (a range) or {choices: [...]}"),
    ("not-a-mapping", {"space": {"train.lr": [0.1, 0.2]}}, "tune.space.train.lr = [0.1, 0.2]: expected a valid dictionary"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_value_is_one_line_naming_the_key(default_params: dict[str, Any], changes: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_params(_tune(default_params, **changes))
    assert str(info.value) == f"params.yaml: {message}"


def test_a_timeout_alone_stops_the_search(default_params: dict[str, Any]) -> None:
    tune = require_tune(parse_params(_tune(default_params, trials=None, timeout_minutes=2.5)))
    assert (tune.trials, tune.timeout_minutes) == (None, 2.5)


@pytest.mark.parametrize(("metric", "primary", "task", "expected"), [
    ("auto", "accuracy", "classification", ("accuracy", "maximize")),
    ("auto", "r2", "regression", ("r2", "maximize")),
    ("rmse", "r2", "regression", ("rmse", "minimize")),
    ("macro_f1", "accuracy", "classification", ("macro_f1", "maximize")),
])
def test_the_metric_and_its_direction(default_params: dict[str, Any], metric: str, primary: str, task: str,
                                      expected: tuple[str, str]) -> None:
    tune = require_tune(parse_params(_tune(default_params, metric=metric)))
    assert tune_metric(tune, primary, task) == expected


def test_a_metric_of_the_other_task_is_refused(default_params: dict[str, Any]) -> None:
    tune = require_tune(parse_params(_tune(default_params, metric="mae")))
    with pytest.raises(PipelineError) as info:
        tune_metric(tune, "accuracy", "classification")
    assert str(info.value) == ("params.yaml: tune.metric = 'mae' with a classification task: expected 'auto' or one "
                               "of ('accuracy', 'macro_f1')")
