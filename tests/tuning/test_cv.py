"""Cross-validation's figures: the mean and sample standard deviation over folds, the metrics every fold has."""

from __future__ import annotations

import math

import pytest

from pipeline.tuning.cv import CVResult, FoldScore


def _fold(i: int, **metrics: float) -> FoldScore:
    return FoldScore(i, {f"val/{k.replace('__', '/')}": v for k, v in metrics.items()}, None, 10, 1.0)


def test_mean_and_sample_std_over_folds() -> None:
    result = CVResult([_fold(0, accuracy=0.9, log_loss=0.3), _fold(1, accuracy=0.8, log_loss=0.5),
                       _fold(2, accuracy=1.0, log_loss=0.1)])
    assert result.mean == pytest.approx({"val/accuracy": 0.9, "val/log_loss": 0.3})
    assert result.std["val/accuracy"] == pytest.approx(0.1)  # sqrt((0.01 + 0.01 + 0) / 2)
    assert result.std["val/log_loss"] == pytest.approx(0.2)


def test_a_figure_missing_from_one_fold_is_left_out_of_the_summary() -> None:
    result = CVResult([_fold(0, accuracy=0.9, f1__Gentoo=0.8), _fold(1, accuracy=0.7)])
    assert result.names == ["val/accuracy"]
    summary = result.summary()
    assert summary == pytest.approx({"cv/val/accuracy/mean": 0.8, "cv/val/accuracy/std": math.sqrt(0.02),
                                     "val/accuracy": 0.8})
