from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.metrics import classification_metrics, flatten_metrics, regression_metrics


def test_metrics_match_hand_computed_values() -> None:
    y_true = pd.Series(["a", "a", "a", "b", "b", "c"])
    y_pred = pd.Series(["a", "a", "b", "b", "c", "c"])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5) and m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5) and m["per_class"]["c"]["recall"] == 1.0
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_class_never_predicted_scores_zero_not_nan() -> None:
    m = classification_metrics(pd.Series(["a", "b"]), pd.Series(["a", "a"]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_regression_metrics_match_hand_computed_values() -> None:
    m = regression_metrics(pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([1.0, 2.0, 3.0, 6.0]))
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # residual SS 4, total SS 5
    assert m["mape"] == pytest.approx((2 / 4) / 4)  # only the last row errs, by 2 on 4


def test_mape_is_undefined_when_a_target_is_zero() -> None:
    m = regression_metrics(pd.Series([0.0, 2.0]), pd.Series([1.0, 2.0]))
    assert m["mape"] is None and "test/mape" not in flatten_metrics(m)


def test_probability_metrics_match_hand_computed_values() -> None:
    y_true = pd.Series(["a", "a", "b", "b"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    y_pred = pd.Series(["a", "b", "b", "b"])
    m = classification_metrics(y_true, y_pred, ["a", "b"], proba)
    # pairs (positive b, negative a) ranked right: (0.8 > 0.1), (0.8 > 0.6), (0.7 > 0.1), (0.7 > 0.6): AUC 1
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.7])))
    # confidences 0.9, 0.6, 0.8, 0.7 each in its own bin of 15: ECE = mean |confidence - correct|
    assert m["ece"] == pytest.approx(np.mean([abs(0.9 - 1), abs(0.6 - 0), abs(0.8 - 1), abs(0.7 - 1)]))
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert m["macro_precision"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert m["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_one_vs_rest_auc_for_three_classes_and_none_when_a_class_is_missing() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    full = classification_metrics(pd.Series([0, 1, 2, 0]), pd.Series([0, 1, 2, 0]), [0, 1, 2], proba)
    assert full["roc_auc"] == pytest.approx(1.0)
    partial = classification_metrics(pd.Series([0, 1, 1, 0]), pd.Series([0, 1, 2, 0]), [0, 1, 2], proba)
    assert partial["roc_auc"] is None and "test/roc_auc" not in flatten_metrics(partial)
    assert np.isfinite(partial["log_loss"]) and 0 <= partial["ece"] <= 1
