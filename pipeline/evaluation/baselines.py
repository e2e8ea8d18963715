"""Simple scikit-learn models fitted on the network's own scaled train split: is the network worth it?

Each baseline sees exactly the inputs the network saw (the scale stage's matrices, flattened: images pixel by
pixel, sequences step by step with padding zeroed and the mask dropped) and is scored on the same test rows by
the same metric code. Large train splits are subsampled (seeded) so a forest never dominates evaluate's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config.training import Baseline

# per value of evaluate.primary_metric but 'auto' (tests/evaluation check the keys against the type)
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "r2": True, "mae": False, "rmse": False}


def flat_inputs(x: np.ndarray, sequence: bool) -> np.ndarray:
    """(N, ...) network inputs as (N, D) rows; a sequence's padded steps are zeroed and its mask dropped."""
    if sequence:
        x = x[..., :-1] * x[..., -1:]  # (N, T, F): padding is zero whatever the features' scaling
    return x.reshape(len(x), -1)


def estimators(task: str, seed: int) -> dict[str, Callable[[], Any]]:
    """Per value of ``evaluate.baselines`` (:data:`pipeline.config.training.Baseline`; tests check the keys), what
    makes that unfitted estimator for ``task``.

    dummy: the majority class (with its prior as probabilities), or the mean; linear: logistic regression for
    classes, least squares for values; nearest: the label (or value) of the closest train row (Euclidean; its
    probabilities are that row's one-hot), the standard baseline of time-series classification.
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor  # scikit-learn is slow to import: only when asked
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    classification = task == "classification"
    forest = RandomForestClassifier if classification else RandomForestRegressor
    nearest = KNeighborsClassifier if classification else KNeighborsRegressor
    return {
        "dummy": lambda: DummyClassifier(strategy="prior") if classification else DummyRegressor(strategy="mean"),
        "linear": lambda: LogisticRegression(max_iter=2000) if classification else LinearRegression(),
        "forest": lambda: forest(n_estimators=100, random_state=seed, n_jobs=1),
        "nearest": lambda: nearest(n_neighbors=1, n_jobs=1),
    }


def fit_predict(
    names: tuple[Baseline, ...],
    task: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    seed: int,
    max_rows: int,
) -> dict[str, np.ndarray]:
    """Fit each named baseline on (at most ``max_rows`` of) the train rows; its test outputs.

    Returns:
        Per baseline: (M, K) class probabilities in class-index order (classification), or (M,) predicted
        values in the scaled target's units (regression).
    """
    if len(x_train) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x_train), size=max_rows, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    makers = estimators(task, seed)
    out: dict[str, np.ndarray] = {}
    for name in names:
        model = makers[name]().fit(x_train, y_train)
        if task == "regression":
            out[name] = model.predict(x_test).astype("float64")
            continue
        proba = np.zeros((len(x_test), n_classes))  # a class missing from the sample keeps probability 0
        proba[:, model.classes_.astype(int)] = model.predict_proba(x_test)
        out[name] = proba
    return out


def as_predictions(output: np.ndarray, classes: list, task: str, inverse: Any = None) -> pd.DataFrame:
    """Baseline outputs as the bundle reports a network's: a ``prediction`` column (+ ``proba_<class>``)."""
    if task == "regression":
        return pd.DataFrame({"prediction": inverse(output) if inverse is not None else output})
    frame = pd.DataFrame(output, columns=[f"proba_{c}" for c in classes])
    frame.insert(0, "prediction", pd.Series(classes).to_numpy()[output.argmax(axis=1)])
    return frame


def best(scores: dict[str, dict[str, Any]], metric: str) -> tuple[str, float]:
    """The best baseline by ``metric`` and its value."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    name = max(scores, key=lambda n: sign * scores[n][metric])
    return name, float(scores[name][metric])


def verdict(network: float, baseline: float, metric: str) -> str:
    """``beats``, ``ties`` or ``loses``: the network's ``metric`` against the best baseline's."""
    if abs(network - baseline) <= 1e-12 * max(1.0, abs(baseline)):
        return "ties"
    better = network > baseline if HIGHER_IS_BETTER[metric] else network < baseline
    return "beats" if better else "loses"
