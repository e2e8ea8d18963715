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
    ) -> None:
        super().__init__()
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

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch  # (B, F), (B,) class indices or standardised targets
        out = self.net(x)  # (B, K) logits or (B, 1)
        if self.task == "classification":
            loss = F.cross_entropy(out, y, weight=self.class_weight)
            metric = {f"{stage}/acc": (out.argmax(dim=1) == y).float().mean()}
        else:
            prediction = out.squeeze(1)  # (B,)
            loss = F.mse_loss(prediction, y)
            metric = {f"{stage}/mae": (prediction - y).abs().mean()}
        # on_epoch with batch_size weights each batch by its rows, so the epoch figure is the true mean.
        self.log_dict({f"{stage}/loss": loss, **metric}, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(
                self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        raise ValueError(f"train.optimizer: expected 'sgd' or 'adam', got {self.optimizer_name!r}")
