"""Baselines: the inputs they see, their outputs in the network's format, and the verdict against the network."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import baselines


def test_sequences_are_flattened_with_padding_zeroed_and_the_mask_dropped() -> None:
    x = np.array([[[1.0, 1.0], [2.0, 1.0], [-0.5, 0.0]]], dtype="float32")  # (1, T=3, F+1): last step is padding
    assert baselines.flat_inputs(x, sequence=True).tolist() == [[1.0, 2.0, 0.0]]
    images = np.arange(2 * 1 * 2 * 2, dtype="float32").reshape(2, 1, 2, 2)
    assert baselines.flat_inputs(images, sequence=False).shape == (2, 4)


def test_dummy_predicts_the_majority_class_and_probabilities_keep_class_positions() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = np.array([2] * 20 + [0] * 10)  # class 1 never appears in train
    out = baselines.fit_predict(("dummy", "linear"), "classification", x, y, x[:5], n_classes=3, seed=0, max_rows=100)
    assert out["dummy"].shape == (5, 3)
    assert np.allclose(out["dummy"], [[1 / 3, 0.0, 2 / 3]] * 5)  # the train prior, class 1 at probability 0
    frame = baselines.as_predictions(out["dummy"], ["a", "b", "c"], "classification")
    assert frame["prediction"].tolist() == ["c"] * 5 and list(frame.columns) == ["prediction", "proba_a", "proba_b", "proba_c"]
    assert np.allclose(out["linear"].sum(axis=1), 1.0) and (out["linear"][:, 1] == 0).all()


def test_regression_baselines_come_back_in_target_units() -> None:
    x = np.linspace(0, 1, 50)[:, None]
    y = 3 * x[:, 0] - 1
    out = baselines.fit_predict(("dummy", "linear"), "regression", x, y, x[:3], n_classes=0, seed=0, max_rows=100)
    assert np.allclose(out["linear"], y[:3]) and np.allclose(out["dummy"], y.mean())
    frame = baselines.as_predictions(out["linear"], [], "regression", inverse=lambda v: v * 10 + 5)
    assert np.allclose(frame["prediction"], y[:3] * 10 + 5)


def test_a_large_train_split_is_sampled_down_seeded() -> None:
    x = np.arange(1000, dtype="float64")[:, None]
    y = (x[:, 0] > 500).astype(int)
    a = baselines.fit_predict(("forest",), "classification", x, y, x, n_classes=2, seed=1, max_rows=50)
    b = baselines.fit_predict(("forest",), "classification", x, y, x, n_classes=2, seed=1, max_rows=50)
    assert np.array_equal(a["forest"], b["forest"])


def test_nearest_is_exact_where_a_nearest_neighbour_rule_is() -> None:
    # a 4 x 4 checkerboard: no line separates it, but every jittered test point's closest train point is its own cell
    grid = np.array([(i, j) for i in range(4) for j in range(4)], dtype="float64")
    x = np.repeat(grid, 5, axis=0) + np.random.default_rng(0).uniform(-0.2, 0.2, size=(80, 2))
    y = (x.round().sum(axis=1) % 2).astype(int)
    test = grid + np.random.default_rng(1).uniform(-0.2, 0.2, size=grid.shape)
    expected = (grid.sum(axis=1) % 2).astype(int)
    out = baselines.fit_predict(("nearest", "linear"), "classification", x, y, test, n_classes=2, seed=0, max_rows=80)
    assert (out["nearest"].argmax(axis=1) == expected).mean() == 1.0
    assert set(out["nearest"].ravel().tolist()) == {0.0, 1.0}  # one-hot: the neighbour's class
    assert (out["linear"].argmax(axis=1) == expected).mean() < 0.8  # the table does need the neighbour rule
    values = baselines.fit_predict(("nearest",), "regression", grid, grid[:, 0] * 10 - grid[:, 1], test,
                                   n_classes=0, seed=0, max_rows=80)
    assert np.allclose(values["nearest"], grid[:, 0] * 10 - grid[:, 1])  # the value of the nearest train row


@pytest.mark.parametrize(("network", "baseline", "metric", "expected"), [
    (0.99, 0.98, "accuracy", "beats"), (0.98, 0.98, "accuracy", "ties"), (0.97, 0.98, "accuracy", "loses"),
    (40.0, 45.0, "mae", "beats"), (50.0, 45.0, "rmse", "loses"), (0.3, 0.4, "r2", "loses"),
])
def test_verdict_knows_which_way_each_metric_improves(network: float, baseline: float, metric: str, expected: str) -> None:
    assert baselines.verdict(network, baseline, metric) == expected


def test_best_picks_the_lowest_error_and_the_highest_score() -> None:
    scores = {"dummy": {"mae": 60.0, "r2": -0.1}, "forest": {"mae": 45.0, "r2": 0.4}, "linear": {"mae": 44.0, "r2": 0.38}}
    assert baselines.best(scores, "mae") == ("linear", 44.0)
    assert baselines.best(scores, "r2") == ("forest", 0.4)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_baseline_and_metric_the_schema_admits_has_an_entry(task: str) -> None:
    """The dispatch tables cover exactly the schema's values, so a lookup after validation cannot miss."""
    from typing import get_args

    from pipeline.config.training import Baseline, Metric

    assert set(baselines.estimators(task, seed=0)) == set(get_args(Baseline))
    assert set(baselines.HIGHER_IS_BETTER) == set(get_args(Metric))
