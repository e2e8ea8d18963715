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
    """The confusion matrix twice: counts, and each row divided by its total (recall on the diagonal)."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    counts = confusion_matrix(y_true, y_pred, labels=classes)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 1.2 * len(classes) + 3
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, 1.0 * len(classes) + 3.3))
    names = [str(c) for c in classes]
    for ax, values, label, text in ((axes[0], counts, "rows", "{:d}"), (axes[1], shares, "share of the actual class", "{:.2f}")):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, label=label)
        ax.set_xticks(range(len(classes)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("actual class")
        for i in range(len(classes)):
            for j in range(len(classes)):
                dark = values[i, j] > values.max() / 2
                ax.text(j, i, text.format(values[i, j]), ha="center", va="center", color="white" if dark else "black")
    axes[0].set_title("counts")
    axes[1].set_title("row-normalised")
    fig.suptitle(title)
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
