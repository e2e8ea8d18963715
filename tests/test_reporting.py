from __future__ import annotations

import pandas as pd
import pytest

from pipeline.reporting import classification_metrics


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
    from pipeline.reporting import regression_metrics

    m = regression_metrics(pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([1.0, 2.0, 3.0, 6.0]))
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # residual SS 4, total SS 5
