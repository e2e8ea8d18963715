"""Metrics of a task on one split, computed by scikit-learn and torchmetrics (no arithmetic written here).

A metric that is undefined on a split (ROC-AUC when a class is absent from it, MAPE when a target is 0) is
``None``, written as ``null``, rather than a NaN that would read as a broken model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CALIBRATION_BINS = 15  # the usual choice for expected calibration error (Guo et al., 2017)


def classification_metrics(
    y_true: pd.Series, y_pred: pd.Series, classes: list, proba: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro and per-class precision / recall / F1, and from ``proba`` (N, K) in
    ``classes`` order: ROC-AUC (one-vs-rest for more than two classes), log loss and expected calibration error.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        precision_recall_fscore_support,
    )

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
    }
    if proba is not None:
        out.update(probability_metrics(y_true, np.asarray(proba, dtype="float64"), classes))
    out["per_class"] = {
        str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    return out


def probability_metrics(y_true: pd.Series, proba: np.ndarray, classes: list) -> dict[str, float | None]:
    """ROC-AUC, log loss and expected calibration error of class probabilities ``proba`` (N, K)."""
    import torch
    from sklearn.metrics import log_loss, roc_auc_score
    from torchmetrics.functional.classification import multiclass_calibration_error

    # float32 softmax rows sum to 1 only to ~1e-7; scikit-learn's log loss asks for float64 exactness
    proba = proba / proba.sum(axis=1, keepdims=True)
    index = {c: i for i, c in enumerate(classes)}
    target = np.array([index[v] for v in y_true.tolist()], dtype="int64")  # (N,) class positions
    present = np.unique(target)
    if len(present) < 2:
        auc = None  # one class only: no ranking to score
    elif len(classes) == 2:
        auc = float(roc_auc_score(target, proba[:, 1]))
    elif len(present) == len(classes):
        auc = float(roc_auc_score(target, proba, multi_class="ovr", labels=list(range(len(classes)))))
    else:
        auc = None  # one-vs-rest needs every class present
    ece = multiclass_calibration_error(torch.tensor(proba), torch.tensor(target), num_classes=len(classes),
                                       n_bins=CALIBRATION_BINS, norm="l1")
    return {
        "roc_auc": auc,
        "log_loss": float(log_loss(target, proba, labels=list(range(len(classes))))),
        "ece": float(ece),
    }


def regression_metrics(y_true: pd.Series, y_pred: pd.Series) -> dict[str, Any]:
    """MAE, RMSE, R^2 and (when no target is 0) MAPE, in the target's units."""
    from sklearn.metrics import (
        mean_absolute_error,
        mean_absolute_percentage_error,
        r2_score,
        root_mean_squared_error,
    )

    zeros = bool((np.asarray(y_true, dtype="float64") == 0).any())
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
        "mape": None if zeros else float(mean_absolute_percentage_error(y_true, y_pred)),
    }


def flatten_metrics(metrics: dict[str, Any], prefix: str = "test") -> dict[str, float]:
    """``{"accuracy": .., "per_class": {"A": {"f1": ..}}}`` -> ``{"test/accuracy": .., "test/f1/A": ..}`` for MLflow.

    Undefined metrics (``None``) are left out.
    """
    flat = {f"{prefix}/{k}": float(v) for k, v in metrics.items() if k != "per_class" and v is not None}
    for cls, values in metrics.get("per_class", {}).items():
        flat.update({f"{prefix}/{name}/{cls}": float(v) for name, v in values.items() if name != "support"})
    return flat
