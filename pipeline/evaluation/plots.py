"""Evaluate's plots: confusion matrix, ROC / precision-recall, calibration, residuals, training curves, gradients.

Each is a pure function of arrays that writes one titled PNG with labelled axes and class names; the curves'
arithmetic is scikit-learn's. Matplotlib helpers are shared with :mod:`pipeline.reporting`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic_file
from pipeline.reporting import _pyplot, _save, confusion_png, predicted_vs_actual_png


def learning_curves_png(path: Path, history: pd.DataFrame, metric: str, title: str) -> None:
    """Loss and ``metric`` per epoch for train and val (two panels), and the learning rate (a third)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, name in zip(axes[:2], ("loss", metric), strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            column = f"{split}/{name}"
            if column in history:
                ax.plot(history["epoch"], history[column], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.legend()
    losses = history[[c for c in ("train/loss", "val/loss") if c in history]]
    if (losses > 0).all().all():
        axes[0].set_yscale("log")  # losses fall over orders of magnitude
    axes[2].plot(history["epoch"], history["lr"], color="tab:purple")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("learning rate")
    axes[2].set_title("learning-rate schedule")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def gradient_norms_png(path: Path, history: pd.DataFrame, title: str) -> None:
    """Each weight's gradient norm per epoch on a log scale: vanishing layers sink, exploding ones climb."""
    plt = _pyplot()
    columns = [c for c in history.columns if c.startswith("grad_norm/")]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for column in columns:
        ax.plot(history["epoch"], history[column].clip(lower=1e-12), label=column.removeprefix("grad_norm/"))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient L2 norm (last step of the epoch)")
    ax.set_title(title)
    if columns:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def roc_pr_png(path: Path, y_true: pd.Series, proba: np.ndarray, classes: list, title: str) -> None:
    """ROC and precision-recall curves, one per class against the rest, with each curve's area in the legend."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(12, 5))
    truth = y_true.to_numpy()
    for k, cls in enumerate(classes):
        positive = truth == cls
        if positive.all() or not positive.any():
            continue  # a class absent from (or alone in) the split has no curve
        fpr, tpr, _ = roc_curve(positive, proba[:, k])
        precision, recall, _ = precision_recall_curve(positive, proba[:, k])
        roc.plot(fpr, tpr, label=f"{cls} (AUC {auc(fpr, tpr):.3f})")
        pr.plot(recall, precision, label=f"{cls} (AP {average_precision_score(positive, proba[:, k]):.3f})")
    roc.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate")
    roc.set_title("ROC, one class against the rest")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall, one class against the rest")
    for ax in (roc, pr):
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def calibration_png(path: Path, y_true: pd.Series, proba: np.ndarray, classes: list, title: str, bins: int = 10) -> None:
    """Reliability diagram of the top-class confidence: accuracy per confidence bin against the diagonal."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    confidence = proba.max(axis=1)
    correct = pd.Series(classes).to_numpy()[proba.argmax(axis=1)] == y_true.to_numpy()
    fig, (top, counts) = plt.subplots(2, 1, figsize=(6, 6.5), height_ratios=(3, 1), sharex=True)
    if correct.all() or not correct.any():
        top.axhline(float(correct.mean()), color="tab:blue", label="accuracy (one outcome only)")
    else:
        accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
        top.plot(mean_confidence, accuracy, "o-", label="model")
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    top.set_ylabel("accuracy in bin")
    top.set_title(title)
    top.legend(loc="upper left")
    counts.hist(confidence, bins=bins, range=(0, 1), color="tab:gray")
    counts.set_xlabel("confidence of the predicted class")
    counts.set_ylabel("rows")
    fig.tight_layout()
    _save(fig, path)


def residuals_png(path: Path, y_true: pd.Series, y_pred: pd.Series, target: str, title: str) -> None:
    """Residuals (actual - predicted) against the prediction, and their histogram: bias and spread at a glance."""
    plt = _pyplot()
    residual = y_true.to_numpy(dtype="float64") - y_pred.to_numpy(dtype="float64")
    fig, (scatter, spread) = plt.subplots(1, 2, figsize=(12, 4.8))
    scatter.scatter(y_pred, residual, s=14, alpha=0.7)
    scatter.axhline(0, color="grey", linestyle="--")
    scatter.set_xlabel(f"predicted {target}")
    scatter.set_ylabel(f"residual (actual - predicted {target})")
    scatter.set_title("residuals against predictions")
    spread.hist(residual, bins=30, color="tab:gray")
    spread.set_xlabel("residual")
    spread.set_ylabel("rows")
    spread.set_title(f"mean {residual.mean():.3g}, std {residual.std():.3g}")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def write_plots(
    folder: Path,
    task: str,
    y_true: pd.Series,
    y_pred: pd.Series,
    classes: list,
    target: str,
    title: str,
    proba: np.ndarray | None = None,
    history: list[dict[str, float]] | None = None,
) -> list[Path]:
    """Write the task's plot data (CSV) and images (PNG, under ``images/``); return the images.

    Classification: confusion matrix (counts and row-normalised), ROC and precision-recall per class and a
    calibration curve (the last three need ``proba``). Regression: predicted against actual, and residuals.
    Both: learning curves with the learning rate, and per-layer gradient norms (from ``history``).
    """
    folder = Path(folder)
    # images go in a folder of their own: dvc.yaml declares the folder, so each task's set renders without a
    # definition naming a file the other task never writes (which `dvc plots` reports as a failure)
    pictures = folder / "images"
    frame = pd.DataFrame({"actual": y_true.to_numpy(), "predicted": y_pred.to_numpy()})
    name = "confusion" if task == "classification" else "predicted_vs_actual"
    with atomic_file(folder / f"{name}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    images = [pictures / f"{name}.png"]
    if task == "classification":
        confusion_png(images[0], y_true, y_pred, classes, title)
        if proba is not None:
            roc_pr_png(pictures / "roc_pr.png", y_true, proba, classes, title)
            calibration_png(pictures / "calibration.png", y_true, proba, classes, f"{title}: calibration")
            images += [pictures / "roc_pr.png", pictures / "calibration.png"]
    else:
        predicted_vs_actual_png(images[0], y_true, y_pred, target, title)
        residuals_png(pictures / "residuals.png", y_true, y_pred, target, title)
        images.append(pictures / "residuals.png")
    if history:
        table = pd.DataFrame(history)
        with atomic_file(folder / "history.csv") as tmp:
            table.to_csv(tmp, index=False)
        metric = "acc" if task == "classification" else "mae"
        learning_curves_png(pictures / "learning_curves.png", table, metric, title)
        gradient_norms_png(pictures / "gradient_norms.png", table, f"{title}: gradient norms per layer")
        images += [pictures / "learning_curves.png", pictures / "gradient_norms.png"]
    return images
