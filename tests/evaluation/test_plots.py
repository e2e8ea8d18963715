"""Plots: every image of each task is written as a PNG, and the curves' data goes where `dvc plots` reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.plots import write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _history(epochs: int = 6) -> list[dict[str, float]]:
    return [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/loss": 1.2 / (e + 1), "train/acc": 0.5 + e / 20,
             "val/acc": 0.45 + e / 20, "lr": 0.01 * 0.5 ** (e // 2), "grad_norm/layers.0.weight": 10.0 ** -e,
             "grad_norm/layers.2.weight": 0.5, "gap/loss": 0.2 / (e + 1)} for e in range(epochs)]


def test_classification_writes_confusion_roc_calibration_curves_and_gradients(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    actual = pd.Series(rng.choice(classes, size=60))
    proba = rng.dirichlet(np.ones(3), size=60)
    predicted = pd.Series(np.array(classes)[proba.argmax(axis=1)])
    images = write_plots(tmp_path, "classification", actual, predicted, classes, "species", "t", proba, _history())
    names = sorted(p.name for p in images)
    assert names == ["calibration.png", "confusion.png", "gradient_norms.png", "learning_curves.png", "roc_pr.png"]
    for image in images:
        assert image.parent == tmp_path / "images"  # the folder dvc.yaml declares
        assert image.read_bytes()[:8] == PNG and image.stat().st_size > 10_000, image.name
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == list(range(6)) and {"train/loss", "val/loss", "lr"} <= set(history.columns)
    assert pd.read_csv(tmp_path / "confusion.csv").shape == (60, 2)


def test_regression_writes_predicted_vs_actual_and_residuals(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    actual = pd.Series(rng.normal(100, 20, size=40))
    predicted = actual + rng.normal(0, 5, size=40)
    history = [{k.replace("acc", "mae"): v for k, v in row.items()} for row in _history()]
    images = write_plots(tmp_path, "regression", actual, predicted, [], "progression", "t", None, history)
    assert sorted(p.name for p in images) == ["gradient_norms.png", "learning_curves.png", "predicted_vs_actual.png",
                                              "residuals.png"]
    assert not (tmp_path / "images/confusion.png").exists()
    assert (tmp_path / "images/residuals.png").stat().st_size > 10_000


@pytest.mark.parametrize("missing", ["Gentoo"])
def test_a_class_absent_from_the_split_draws_no_curve_instead_of_failing(tmp_path: Path, missing: str) -> None:
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    actual = pd.Series(["Adelie", "Chinstrap"] * 10)
    proba = np.tile([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]], (10, 1))
    predicted = pd.Series(np.array(classes)[proba.argmax(axis=1)])
    images = write_plots(tmp_path, "classification", actual, predicted, classes, "species", "t", proba)
    assert (tmp_path / "images/roc_pr.png") in images and (tmp_path / "images/calibration.png").stat().st_size > 10_000
