"""Callbacks: per-epoch metric history (with a finiteness check) and keeping the best weights in memory.

Both carry their state in training checkpoints, so a resumed training ends with the whole history and the
best weights of all its epochs, not only of those after the resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from pipeline.errors import PipelineError


FIGURES = ("val/", "dead_relu/", "grad_norm/", "train/")  # the order the history lists an epoch's figures in


def _figure_order(name: str) -> int:
    """Where ``name`` comes in an epoch's row (by :data:`FIGURES`; anything else last)."""
    return [name.startswith(prefix) for prefix in FIGURES].index(True) if name.startswith(FIGURES) else len(FIGURES)


class EpochHistory(L.Callback):
    """Record train/val metrics once per epoch, hand them to ``sink``, and stop on a non-finite loss.

    Args:
        sink: Called with (metrics, epoch) after each epoch, e.g. to log to MLflow.
    """

    def __init__(self, sink: Callable[[dict[str, float], int], None] | None = None) -> None:
        self.sink = sink
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the epochs of an interrupted run, handing them to ``sink`` again (a new MLflow run gets them too)."""
        self.history = [dict(row) for row in state_dict["history"]]
        if self.sink is not None:
            for row in self.history:
                self.sink({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        figures = getattr(module, "figures", {})  # the epoch's figures, as the module reported them
        metrics = {k: float(figures[k]) for k in sorted(figures, key=_figure_order) if k != "lr"}
        if "train/loss" in metrics and "val/loss" in metrics:  # overfitting shows as a widening gap
            metrics["gap/loss"] = metrics["val/loss"] - metrics["train/loss"]
        # the rate the epoch trained with, as the module reported it (a schedule may already have moved on)
        logged = figures.get("lr")
        metrics["lr"] = float(logged) if logged is not None else float(trainer.optimizers[0].param_groups[0]["lr"])
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, **metrics})
        if self.sink is not None:
            self.sink(metrics, epoch)
        for name in ("train/loss", "val/loss"):
            if name in metrics and not math.isfinite(metrics[name]):
                raise PipelineError(
                    f"{name} = {metrics[name]} at epoch {epoch}: expected a finite loss; "
                    "lower train.lr or change the initialisation"
                )


class BestWeights(L.Callback):
    """Keep a CPU copy of the weights from the epoch with the best monitored validation value.

    "Best" uses the same rule as early stopping: an improvement must exceed ``min_delta``.
    """

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.min_delta = min_delta
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_value, self.best_epoch = state_dict["best_value"], state_dict["best_epoch"]
        self.weights = state_dict["weights"]

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return
        if self.best_value is None or self.sign * (value - self.best_value) < -self.min_delta:
            self.best_value, self.best_epoch = value, trainer.current_epoch
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in module.net.state_dict().items()}
