"""One LightningModule around any network, for classification or regression; train, val and test share one step."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitModel(L.LightningModule):
    """Train a network: cross-entropy on class logits, or mean squared error on one regression output.

    Logs ``<stage>/loss`` and ``<stage>/acc`` (classification) or ``<stage>/mae`` (regression, in standardised
    target units) per epoch, for ``stage`` in train, val, test.

    Args:
        net: The network; its output is (B, n_classes) logits, or (B, 1) for regression.
        task: ``classification`` or ``regression``.
        optimizer: ``sgd`` or ``adam``.
        lr: Learning rate.
        momentum: SGD momentum (0 for plain SGD).
        weight_decay: L2 penalty coefficient.
        class_weight: Optional per-class loss weights (K,), in class-index order (upweighting rare classes).
        batch_size: Rows per optimizer step.
    """

    def __init__(
        self,
        net: nn.Module,
        task: str,
        optimizer: str,
        lr: float,
        momentum: float,
        weight_decay: float,
        class_weight: list[float] | None = None,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        # the module runs the mini-batches of an epoch itself (one Lightning step per epoch, see training_step)
        self.automatic_optimization = False
        self.batch_size = batch_size
        self.net = net
        self.task = task
        # a buffer moves to the training device with the module and is not a trainable parameter
        self.register_buffer("class_weight", None if class_weight is None else torch.tensor(class_weight))
        self.optimizer_name = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        return self.net(x)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out, y, weight=self.class_weight)
        return F.mse_loss(out.squeeze(1), y)

    def _metric(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of correct predictions (classification) or absolute errors (regression)."""
        if self.task == "classification":
            return (out.argmax(dim=1) == y).sum()
        return (out.squeeze(1) - y).abs().sum()

    def _log_epoch(self, stage: str, loss_sum: torch.Tensor, metric_sum: torch.Tensor, n: int) -> None:
        name = "acc" if self.task == "classification" else "mae"
        self.log_dict({f"{stage}/loss": loss_sum / n, f"{stage}/{name}": metric_sum / n}, on_step=False,
                      on_epoch=True, batch_size=n)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """One epoch: mini-batches of ``batch_size`` rows in the order given, one optimizer step each.

        This is the loop a hand-written PyTorch script runs: it steps the torch optimizer and calls
        ``backward`` directly, because Lightning's per-step wrappers cost more than a small network's step.
        Autocast from ``precision`` still applies (Lightning wraps the whole step). Sums stay on the device
        and are logged once, so nothing waits for the device inside the loop. Multi-device strategies wrap
        the network for one backward per forward and need a different loop.
        """
        x, y, order = batch  # (N, ...), (N,), (N,) a permutation of the rows
        optimizer = self.optimizers().optimizer  # the torch optimizer itself: Lightning's wrapper costs per step
        loss_sum = torch.zeros((), device=x.device)
        metric_sum = torch.zeros((), device=x.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = x[idx], y[idx]  # (B, ...), (B,)
            out = self.net(xb)  # (B, K) logits or (B, 1)
            loss = self._loss(out, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
            metric_sum += self._metric(out.detach(), yb)
        self._log_epoch("train", loss_sum, metric_sum, len(order))

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        loss = self._loss(out, y)
        self._log_epoch(stage, loss * len(y), self._metric(out, y).float(), len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(
                self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        raise ValueError(f"train.optimizer: expected 'sgd' or 'adam', got {self.optimizer_name!r}")
