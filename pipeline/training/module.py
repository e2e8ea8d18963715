"""One LightningModule around any network, for classification or regression; train, val and test share one loss."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.training.augment import augment


REGRESSION_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


def penalised(net: nn.Module) -> list[nn.Parameter]:
    """The weights of linear, conv and recurrent layers: what the L1 and L2 penalties shrink (biases and
    normalisation scales are left alone)."""
    return [p for name, p in net.named_parameters() if "weight" in name and p.dim() > 1]


def batch_starts(n_rows: int, batch_size: int, min_rows: int = 2) -> list[int]:
    """Boundaries of an epoch's mini-batches: ``[0, b, 2b, ..., n_rows]``.

    A last batch of fewer than ``min_rows`` rows joins the one before it: batch normalisation cannot take the
    statistics of one row, one row's gradient would count as much as a whole batch's, and with several
    processes each must get a row of every batch (``min_rows`` is then the process count). With
    ``batch_size`` 1 (stochastic updates, one process) every batch is one row, as asked.
    """
    starts = list(range(0, n_rows, batch_size)) + [n_rows]
    if batch_size > 1 and len(starts) > 2 and starts[-1] - starts[-2] < max(min_rows, 2):
        del starts[-2]
    return starts


class LitModel(L.LightningModule):
    """Train a network: cross-entropy on class logits, or MSE / MAE / Huber on one regression output.

    Logs ``<stage>/loss`` and ``<stage>/acc`` (classification) or ``<stage>/mae`` (regression, in standardised
    target units) per epoch, for ``stage`` in train, val, test.

    Args:
        net: The network; its output is (B, n_classes) logits, or (B, 1) for regression.
        task: ``classification`` or ``regression``.
        optimizer: ``sgd``, ``nesterov``, ``adam``, ``adamw`` or ``rmsprop``.
        lr: Learning rate.
        momentum: Momentum for ``sgd``, ``nesterov`` and ``rmsprop`` (0: none).
        weight_decay: L2 penalty coefficient (decoupled for ``adamw``).
        class_weight: Optional per-class loss weights (K,), in class-index order (upweighting rare classes).
        batch_size: Rows per optimizer step.
        l1: L1 penalty on the weights (not biases or norm layers), added to the train loss.
        clip: ``none``, ``norm`` (rescale to a total L2 norm of at most ``clip_max``) or ``value`` (clamp each
            gradient element to +/- ``clip_max``), before each optimizer step.
        clip_max: The clipping threshold.
        label_smoothing: Classification: the share of each target spread over the other classes.
        regression_loss: Regression: ``mse``, ``mae`` or ``huber``.
        schedule: The ``train.schedule`` settings as a dict (``kind``, ``step_size``, ``gamma``, ``patience``,
            ``warmup_epochs``); None or kind ``none`` keeps the learning rate constant.
        max_epochs: Epochs the schedule spans (``cosine``, ``onecycle``).
        augment: The ``train.augment`` settings as a dict (``flip``, ``shift``, ``noise``), applied to each
            training mini-batch; None: no augmentation.
        modality: ``tabular``, ``image`` or ``sequence``: what the inputs are (for augmentation).
        val_offsets: Classification after rebalancing, with the prior correction on: per class index what the
            model bundle adds to the logits (:class:`pipeline.decision.Decision`). Validation then scores the
            corrected logits with an unweighted loss, as the registered model will predict, so early stopping and
            the kept epoch judge that model and not the rebalanced one.
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
        l1: float = 0.0,
        clip: str = "none",
        clip_max: float = 1.0,
        label_smoothing: float = 0.0,
        regression_loss: str = "mse",
        schedule: dict | None = None,
        max_epochs: int = 1,
        augment: dict | None = None,
        modality: str = "tabular",
        val_offsets: list[float] | None = None,
    ) -> None:
        super().__init__()
        # the module runs the mini-batches of an epoch itself (one Lightning step per epoch, see training_step)
        self.automatic_optimization = False
        self.batch_size = batch_size
        self.net = net
        self.task = task
        # a buffer moves to the training device with the module and is not a trainable parameter
        self.register_buffer("class_weight", None if class_weight is None else torch.tensor(class_weight))
        self.register_buffer("val_offsets", None if val_offsets is None else torch.tensor(val_offsets))
        self.optimizer_name = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.l1 = l1
        self.clip, self.clip_max = clip, clip_max
        self.label_smoothing = label_smoothing
        if regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"train.regression_loss: expected one of {sorted(REGRESSION_LOSSES)}, got {regression_loss!r}")
        self.regression_loss = regression_loss
        self.schedule = dict(schedule or {"kind": "none"})
        self.max_epochs = max_epochs
        self.augment = dict(augment or {"flip": "none", "shift": 0, "noise": 0.0})
        self.modality = modality
        self._augmenting = self.augment["flip"] != "none" or self.augment["shift"] > 0 or self.augment["noise"] > 0
        self._scheduler_state: dict[str, Any] | None = None  # from a checkpoint, applied once the schedule exists
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._penalised = penalised(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        return self.net(x)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out, y, weight=self.class_weight, label_smoothing=self.label_smoothing)
        return REGRESSION_LOSSES[self.regression_loss](out.squeeze(1), y)

    def _processes(self) -> tuple[int, int]:
        """The number of training processes and this one's rank (one process when no Trainer drives the module)."""
        trainer = self._trainer
        return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)

    def _share(self, out: torch.Tensor, y: torch.Tensor, batch_y: torch.Tensor) -> torch.Tensor:
        """This process's part of the loss of a batch shared between processes: the sum of its rows' losses over
        the batch's normaliser (its rows, or the sum of their class weights), so the parts add up to exactly
        the loss one process would compute on the whole batch."""
        if self.task == "classification":
            rows = F.cross_entropy(out, y, weight=self.class_weight, label_smoothing=self.label_smoothing,
                                   reduction="none")  # each row already multiplied by its class weight
            total = len(batch_y) if self.class_weight is None else self.class_weight[batch_y].sum()
            return rows.sum() / total
        return REGRESSION_LOSSES[self.regression_loss](out.squeeze(1), y, reduction="sum") / len(batch_y)

    def _penalty(self) -> torch.Tensor | float:
        """The L1 term added to the train loss (the L2 term is the optimizer's weight decay)."""
        if self.l1 == 0:
            return 0.0
        return self.l1 * sum(p.abs().sum() for p in self._penalised)

    def _clip(self) -> None:
        if self.clip == "norm":
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip_max)
        elif self.clip == "value":
            torch.nn.utils.clip_grad_value_(self.net.parameters(), self.clip_max)

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
        and are logged once, so nothing waits for the device inside the loop. Under DDP every process walks
        the same permutation and takes its share of each batch; its backward goes through ``manual_backward``,
        which lets DDP average the gradients, so each step is the step one process would take on the batch.
        """
        x, y, order = batch  # (N, ...), (N,), (N,) a permutation of the rows
        optimizer = self.optimizers().optimizer  # the torch optimizer itself: Lightning's wrapper costs per step
        world, rank = self._processes()
        if self.scheduler is None and self.schedule["kind"] != "none":
            # a resumed optimizer's rate (and one-cycle's momentum), which making a schedule resets
            settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            self.scheduler = self.make_scheduler(optimizer, len(batch_starts(len(order), self.batch_size, world)) - 1)
            if self._scheduler_state is not None:
                self.scheduler.load_state_dict(self._scheduler_state)
                for group, saved in zip(optimizer.param_groups, settings):
                    group.update(saved)
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch starts with (onecycle moves it per batch)
        starts = batch_starts(len(order), self.batch_size, min_rows=world)
        loss_sum = torch.zeros((), device=x.device)
        metric_sum = torch.zeros((), device=x.device)
        for start, end in zip(starts[:-1], starts[1:]):
            idx = order[start:end]
            mine = idx if world == 1 else idx[rank::world]  # data parallel: this process's share of the batch
            xb, yb = x[mine], y[mine]  # (B, ...), (B,)
            if self._augmenting:
                xb = augment(xb, self.modality, **self.augment)
            out = self.net(xb)  # (B, K) logits or (B, 1)
            optimizer.zero_grad()
            if world == 1:
                loss = self._loss(out, yb)
                (loss + self._penalty()).backward()  # plain autograd: Lightning's wrapper costs per step
            else:
                loss = self._share(out, yb, y[idx])
                # DDP averages gradients over processes: scaled by their count, the shares add up to the batch's
                self.manual_backward(loss * world + self._penalty())
            if end == len(order):  # the epoch's last step: sample the gradients, unclipped
                self.log_dict(self._grad_norms(), on_step=False, on_epoch=True, batch_size=1)
            self._clip()
            optimizer.step()
            if self.schedule["kind"] == "onecycle":
                self.scheduler.step()
            loss_sum += loss.detach() * len(idx)
            metric_sum += self._metric(out.detach(), yb)
        if world > 1:  # every process saw a share of each batch: the epoch's figures are the sums over processes
            loss_sum = self.trainer.strategy.reduce(loss_sum, reduce_op="sum")
            metric_sum = self.trainer.strategy.reduce(metric_sum, reduce_op="sum")
        self._log_epoch("train", loss_sum, metric_sum, len(order))
        self.log("lr", lr, on_step=False, on_epoch=True, batch_size=1)
        if self.schedule["kind"] in ("step", "cosine"):
            self.scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what Lightning does not save: the RNG states (dropout, augmentation) and the lazily made schedule."""
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.scheduler is not None:
            checkpoint["schedule"] = self.scheduler.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the RNG states and keep the schedule's state for when the schedule is made."""
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._scheduler_state = checkpoint.get("schedule")

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
        """The schedule ``self.schedule`` describes; epoch-based except ``onecycle``, which moves every batch."""
        cfg, sched = self.schedule, torch.optim.lr_scheduler
        kind, warmup = cfg["kind"], int(cfg.get("warmup_epochs", 0))
        if kind == "onecycle":
            return sched.OneCycleLR(optimizer, max_lr=self.lr, total_steps=max(steps_per_epoch * self.max_epochs, 1))
        if kind == "plateau":
            return sched.ReduceLROnPlateau(optimizer, mode="min", factor=cfg["gamma"], patience=cfg["patience"])
        if kind == "step":
            main = sched.StepLR(optimizer, step_size=cfg["step_size"], gamma=cfg["gamma"])
        elif kind == "cosine":
            main = sched.CosineAnnealingLR(optimizer, T_max=max(self.max_epochs - warmup, 1))
        else:
            raise ValueError(f"train.schedule.kind: expected none, step, cosine, onecycle or plateau, got {kind!r}")
        if warmup == 0:
            return main
        ramp = sched.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
        return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])

    _val_loss: torch.Tensor | None = None

    def _grad_norms(self) -> dict[str, torch.Tensor]:
        """L2 norm of each weight's gradient (``grad_norm/<parameter>``): vanishing or exploding, layer by layer."""
        return {f"grad_norm/{name}": torch.linalg.vector_norm(p.grad.detach())
                for name, p in self.net.named_parameters() if "weight" in name and p.grad is not None}

    def on_validation_epoch_start(self) -> None:
        """Watch every ReLU during validation: a unit that is never positive on any val row is dead."""
        self._alive: dict[str, torch.Tensor] = {}
        self._hooks = [module.register_forward_hook(self._watch(name))
                       for name, module in self.net.named_modules() if isinstance(module, nn.ReLU)]

    def _watch(self, name: str):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            # a unit is a feature (B, F), a channel (B, C, ...) over all positions
            positive = (output > 0).reshape(output.shape[0], output.shape[1], -1).any(dim=2).any(dim=0)  # (units,)
            seen = self._alive.get(name)
            self._alive[name] = positive if seen is None else seen | positive
        return hook

    def on_validation_epoch_end(self) -> None:
        for hook in getattr(self, "_hooks", []):
            hook.remove()
        self._hooks = []
        if getattr(self, "_alive", None):
            self.log_dict({f"dead_relu/{name}": 1.0 - alive.float().mean() for name, alive in self._alive.items()},
                          on_step=False, on_epoch=True, batch_size=1)
        if self.schedule["kind"] == "plateau" and self.scheduler is not None and self._val_loss is not None:
            self.scheduler.step(float(self._val_loss))

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        if self.val_offsets is not None:  # judged as the bundle will predict: at the natural class balance
            out = out + self.val_offsets
            loss = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        else:
            loss = self._loss(out, y)
        if stage == "val":
            self._val_loss = loss.detach()  # what a plateau schedule reacts to
        self._log_epoch(stage, loss * len(y), self._metric(out, y).float(), len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.net)

    def make_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        """The configured optimizer over ``net``'s parameters (also what the learning-rate finder trains a copy
        with).

        Weight decay shrinks the same weights as the L1 penalty, never biases or normalisation scales: a
        penalised output bias is pulled away from the class prior (a 3% class needs a logit offset near -3.5),
        which is also why scikit-learn leaves a logistic regression's intercept unpenalised.
        """
        lr = self.lr
        weights = penalised(net)
        chosen = {id(p) for p in weights}
        rest = [p for p in net.parameters() if id(p) not in chosen]
        params = [group for group in ({"params": weights, "weight_decay": self.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}) if group["params"]]
        decay = self.weight_decay
        if self.optimizer_name in ("sgd", "nesterov"):
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=decay,
                                   nesterov=self.optimizer_name == "nesterov")
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=decay)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
        if self.optimizer_name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, momentum=self.momentum, weight_decay=decay)
        raise ValueError(
            f"train.optimizer: expected 'sgd', 'nesterov', 'adam', 'adamw' or 'rmsprop', got {self.optimizer_name!r}"
        )
