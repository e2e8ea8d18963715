"""What evaluate reads of a training run and what it returns: plain typed values, no files, no tracking.

:class:`TrainInfo` is the part of ``models/train.json`` evaluate uses; :class:`Evaluation` is everything evaluate
measured, from which the stage writes ``reports/``, logs to MLflow and prints. Search and cross-validation get an
:class:`Evaluation` in-process, the same numbers the stage would write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.diagnosis import Finding, as_json
from pipeline.modality import MODALITIES

REQUIRED = {"run_id": str, "monitor": str, "history": list, "restarts": list}  # the keys evaluate reads, typed
RESTART_KEYS = ("restart", "seed", "run_id", "best_value")


@dataclass(frozen=True)
class TrainInfo:
    """What evaluate reads of ``models/train.json``.

    Attributes:
        run_id: The training's MLflow run, which evaluate continues.
        monitor: The early-stopping metric, e.g. ``val/loss``.
        history: Per-epoch rows of the selected network.
        restarts: Per restart its ``restart``, ``seed``, ``run_id`` and ``best_value`` (and more).
        selected: The selected restart's number, or ``"ensemble"``.
        epochs: Epochs trained (0 when train.json does not say).
        best_epoch: The best epoch (0 when not said).
        max_epochs: ``train.max_epochs`` as trained (0 when not said).
        patience: Early-stopping patience as trained (0 when not said).
    """

    run_id: str
    monitor: str
    history: list[dict[str, float]]
    restarts: list[dict[str, Any]]
    selected: int | str
    epochs: int = 0
    best_epoch: int = 0
    max_epochs: int = 0
    patience: int = 0

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainInfo:
        """``train.json`` checked for the keys evaluate reads, so a file of another shape is refused up front.

        Raises:
            KeyError, TypeError: On a missing key or a value of the wrong type.
        """
        missing = [key for key in (*REQUIRED, "selected") if key not in state]
        missing += [f"restarts[].{key}" for run in state.get("restarts") or [] for key in RESTART_KEYS
                    if key not in run]
        if missing:
            raise KeyError(missing[0])
        for key, kind in REQUIRED.items():
            if not isinstance(state[key], kind):
                raise TypeError(f"{key}: expected {kind.__name__}, got {type(state[key]).__name__}")
        return cls(state["run_id"], state["monitor"], state["history"], state["restarts"], state["selected"],
                   state.get("epochs", 0), state.get("best_epoch", 0), state.get("max_epochs", 0),
                   state.get("patience", 0))


@dataclass(frozen=True)
class Evaluation:
    """Everything evaluate measured on one model.

    Attributes:
        task: ``classification`` or ``regression``.
        modality: ``tabular``, ``image`` or ``sequence``.
        classes: The class labels in output order (empty for regression).
        primary: ``evaluate.primary_metric`` as resolved for the task.
        splits: Per split (``train``, ``val``, ``test``) its metrics.
        prior_correction: The test metrics before and after the prior correction, and the two priors; None when
            the model does not correct.
        baselines: Per ``evaluate.baselines`` model its test metrics (empty when none are configured).
        versus_baselines: The best baseline on the primary metric and the network's verdict against it.
        restarts: Each restart's test score with their mean and spread; None for a single restart.
        findings: What the curves and scores say went wrong, and why the network lost to a baseline.
        diagnosis: The findings as the plain-text report.
        predictions: The bundle's test predictions, indexed as the bundle returned them.
        actual: The test labels or values, aligned with ``predictions``.
        test_input: The raw test input as ``predict`` takes it (rows, long-format rows or an image array).
        logged: The flat metrics logged to MLflow (``test/...``, ``final/train/...``, ``baseline/...``, ...).
    """

    task: str
    modality: str
    classes: list
    primary: str
    splits: dict[str, dict[str, Any]]
    prior_correction: dict[str, Any] | None
    baselines: dict[str, dict[str, Any]]
    versus_baselines: dict[str, Any] | None
    restarts: dict[str, Any] | None
    findings: list[Finding]
    diagnosis: str
    predictions: pd.DataFrame
    actual: pd.Series
    test_input: pd.DataFrame | np.ndarray
    logged: dict[str, float]

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics as ``metrics.json`` holds them: per split, then whichever comparisons were made."""
        return report_metrics(self.splits, self.prior_correction, self.baselines, self.versus_baselines,
                              self.restarts)

    def metrics_json(self, run_id: str) -> dict[str, Any]:
        """``reports/metrics.json``: the metrics, the findings, and the MLflow run they were logged to."""
        return {**self.metrics, "diagnosis": as_json(self.findings), "mlflow_run_id": run_id}

    @property
    def table(self) -> pd.DataFrame:
        """``reports/predictions.csv``: the predictions with the actual value beside them (after a sequence's id)."""
        recorded = self.predictions.copy()
        recorded.insert(1 if MODALITIES[self.modality].by_series else 0, "actual", self.actual.to_numpy())
        return recorded


def report_metrics(splits: dict[str, dict[str, Any]], prior_correction: dict[str, Any] | None,
                   baselines: dict[str, dict[str, Any]], versus_baselines: dict[str, Any] | None,
                   restarts: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics in ``metrics.json``'s order; a comparison that was not made has no key."""
    metrics: dict[str, Any] = {split: splits[split] for split in ("train", "val", "test")}
    if prior_correction is not None:
        metrics["prior_correction"] = prior_correction
    if versus_baselines is not None:
        metrics["baselines"] = baselines
        metrics["versus_baselines"] = versus_baselines
    if restarts is not None:
        metrics["restarts"] = restarts
    return metrics
