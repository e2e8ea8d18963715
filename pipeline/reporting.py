"""Plots for a task, drawn by matplotlib (pure functions); the metrics are in :mod:`pipeline.evaluation.metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def confusion_png(path: Path, y_true: pd.Series, y_pred: pd.Series, classes: list, title: str) -> None:
    """Draw the confusion matrix with counts in each cell and class names on both axes."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    counts = confusion_matrix(y_true, y_pred, labels=classes)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.0 * len(classes) + 2.5))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="rows")
    names = [str(c) for c in classes]
    ax.set_xticks(range(len(classes)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            dark = counts[i, j] > counts.max() / 2
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if dark else "black")
    fig.tight_layout()
    _save(fig, path)


def predicted_vs_actual_png(path: Path, y_true: pd.Series, y_pred: pd.Series, target: str, title: str) -> None:
    """Scatter of predicted against actual values with the identity line a perfect model would sit on."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.scatter(y_true, y_pred, s=14, alpha=0.7)
    low, high = float(np.min([y_true.min(), y_pred.min()])), float(np.max([y_true.max(), y_pred.max()]))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def write_plots(
    folder: Path, task: str, y_true: pd.Series, y_pred: pd.Series, classes: list, target: str, title: str
) -> list[Path]:
    """Write the task's plot data (CSV, for ``dvc plots``) and images; return the images."""
    folder = Path(folder)
    frame = pd.DataFrame({"actual": y_true.to_numpy(), "predicted": y_pred.to_numpy()})
    name = "confusion" if task == "classification" else "predicted_vs_actual"
    with atomic_file(folder / f"{name}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    if task == "classification":
        confusion_png(folder / f"{name}.png", y_true, y_pred, classes, title)
    else:
        predicted_vs_actual_png(folder / f"{name}.png", y_true, y_pred, target, title)
    return [folder / f"{name}.png"]
