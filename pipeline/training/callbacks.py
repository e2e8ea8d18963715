"""Callbacks: per-epoch metric history (with a finiteness check), keeping the best weights in memory, and early
stopping.

All read the epoch's figures from ``LitModel.figures`` at the end of each training epoch, after the module has
validated (it does so inside its one training step per epoch, see ``LitModel.validate``). All carry their state
in training checkpoints, so a resumed training ends with the whole history and the best weights of all its
epochs, and stops where an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from pipeline.errors import PipelineError
from pipeline.training.transfer import Finetune, hold_norm_statistics, release, set_frozen


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

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        figure = getattr(module, "figures", {}).get(self.monitor)
        if figure is None:
            return
        value = float(figure)
        if not math.isfinite(value):
            return
        if self.best_value is None or self.sign * (value - self.best_value) < -self.min_delta:
            self.best_value, self.best_epoch = value, trainer.current_epoch
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in module.net.state_dict().items()}


class EarlyStop(L.Callback):
    """Stop training once the monitored validation figure has not improved for ``patience`` epochs.

    The rule and its arithmetic are Lightning's ``EarlyStopping`` (``check_finite=False``): an improvement is
    ``current - min_delta < best`` (``+`` and ``>`` when maximising) in float32, so a training stops at the
    epoch it stopped at under Lightning's callback. This one reads the figure from ``LitModel.figures`` instead
    of Lightning's logged metrics: logging it through ``self.log`` cost more per epoch than a penguins epoch's
    optimizer steps. Under DDP every process scores all of val with the same weights, and any process that
    decides to stop stops them all.

    Args:
        monitor: The figure, e.g. ``val/loss``.
        mode: ``min`` or ``max``.
        patience: Epochs without improvement before stopping.
        min_delta: The least change that counts as an improvement.
    """

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float) -> None:
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta = min_delta if mode == "max" else -min_delta
        self.best_score = torch.tensor(-torch.inf if mode == "max" else torch.inf)
        self.wait_count = 0
        self.stopped_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": self.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count, self.stopped_epoch = state_dict["wait_count"], state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        current = getattr(module, "figures", {}).get(self.monitor)
        if current is None:
            return
        current = current.detach().squeeze()
        improved = torch.gt if self.mode == "max" else torch.lt
        if improved(current - self.min_delta, self.best_score.to(current.device)):
            self.best_score, self.wait_count = current, 0
            stop = False
        else:
            self.wait_count += 1
            stop = self.wait_count >= self.patience
        stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop, self.stopped_epoch = True, trainer.current_epoch


class FrozenLayers(L.Callback):
    """Hold ``finetune.frozen`` fixed until ``finetune.unfreeze_epoch``: no gradients (so no step and no weight
    decay moves them) and their batch norms in evaluation mode (their statistics stay the source's). Applied
    before each epoch's training step, after anything that set the network to training mode, and decided from
    the epoch alone, so a resumed training freezes exactly as an uninterrupted one."""

    def __init__(self, finetune: Finetune) -> None:
        self.finetune = finetune

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        net, prefixes = pl_module.net, self.finetune.frozen
        if self.finetune.frozen_at(trainer.current_epoch):
            set_frozen(net, prefixes)
            hold_norm_statistics(net, prefixes)
        elif any(not p.requires_grad for _, p in net.named_parameters()):  # the first epoch released
            release(net, prefixes, trainer.optimizers[0])
