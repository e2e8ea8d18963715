"""One LightningModule around any network, for classification or regression; train, val and test share one loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import TrainConfig
from pipeline.config.base import check_choice
from pipeline.config.training import LastBatch
from pipeline.nets.chunks import chunked_forward
from pipeline.training.augment import augment
from pipeline.training.data import OnHost
from pipeline.training.transfer import Finetune, param_groups

# One loss per value of ``train.regression_loss`` (tests/training check the keys against the type).
REGRESSION_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


def penalised(net: nn.Module) -> list[nn.Parameter]:
    """The weights of linear, conv and recurrent layers: what the L1 and L2 penalties shrink (biases and
    normalisation scales are left alone)."""
    return [p for name, p in net.named_parameters() if "weight" in name and p.dim() > 1]


def batch_starts(n_rows: int, batch_size: int, min_rows: int = 2, last: LastBatch = "keep") -> list[int]:
    """Boundaries of an epoch's mini-batches: ``[0, b, 2b, ..., n_rows]`` (``last``: ``keep``).

    ``last`` says what happens to the rows left over after the full batches (``train.last_batch``): ``keep`` them
    as a smaller last batch; ``even``: as many batches as ``keep`` makes, of sizes that differ by at most one row,
    so no step is a small batch's noisy one (a 3-row batch under batch normalisation can wreck a training at a high
    rate); ``drop`` them from this epoch, as PyTorch's ``drop_last`` does (each epoch's order is a new permutation,
    so other rows are left out next time; with fewer rows than one batch, the one batch is all of them).

    A last batch of fewer than ``min_rows`` rows joins the one before it: batch normalisation cannot take the
    statistics of one row, one row's gradient would count as much as a whole batch's, and with several
    processes each must get a row of every batch (``min_rows`` is then the process count). With
    ``batch_size`` 1 (stochastic updates, one process) every batch is one row, as asked.
    """
    check_choice("train.last_batch", last, LastBatch)
    if last == "drop" and n_rows > batch_size:
        n_rows -= n_rows % batch_size
    if last == "even" and batch_size > 1:
        count = -(-n_rows // batch_size)  # as many batches as keep makes
        starts = [round(i * n_rows / count) for i in range(count + 1)] if n_rows else [0, 0]
        if min(b - a for a, b in zip(starts, starts[1:])) >= max(min_rows, 2) or count == 1:
            return starts
    starts = list(range(0, n_rows, batch_size)) + [n_rows]
    if batch_size > 1 and len(starts) > 2 and starts[-1] - starts[-2] < max(min_rows, 2):
        del starts[-2]
    return starts


Schedule = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
Groups = list[dict[str, Any]]  # an optimizer's parameter groups

# One builder per value of ``train.optimizer`` (tests/training check the keys against the type). SGD, Adam and AdamW
# take PyTorch's fused kernel, one call updating every parameter: the default loops over the parameters in
# Python, which cost half of a small network's optimizer step (benchmarks/train_throughput.py; the same update,
# equal to the unfused one within float32 rounding). RMSprop has no fused kernel.
OPTIMIZERS: dict[str, Callable[[Groups, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                               weight_decay=cfg.weight_decay, fused=True),
    "nesterov": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                    weight_decay=cfg.weight_decay, nesterov=True, fused=True),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True),
    "rmsprop": lambda groups, cfg: torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                       weight_decay=cfg.weight_decay),
}

_sched = torch.optim.lr_scheduler
# One builder per ``train.schedule.kind`` but ``none`` (no schedule is made), given the optimizer, the train
# section (sized: ``max_epochs`` is a number) and the optimizer steps per epoch (keys checked as OPTIMIZERS').
SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, TrainConfig, int], Schedule]] = {
    "onecycle": lambda opt, cfg, steps: _sched.OneCycleLR(opt, max_lr=cfg.lr,
                                                          total_steps=max(steps * cfg.max_epochs, 1)),
    "plateau": lambda opt, cfg, steps: _sched.ReduceLROnPlateau(opt, mode="min", factor=cfg.schedule.gamma,
                                                                patience=cfg.schedule.patience),
    "step": lambda opt, cfg, steps: _sched.StepLR(opt, step_size=cfg.schedule.step_size, gamma=cfg.schedule.gamma),
    "cosine": lambda opt, cfg, steps: _sched.CosineAnnealingLR(
        opt, T_max=max(cfg.max_epochs - cfg.schedule.warmup_epochs, 1)),
}


class LitModel(L.LightningModule):
    """Train a network: cross-entropy on class logits, or MSE / MAE / Huber on one regression output.

    Reports ``<stage>/loss`` and ``<stage>/acc`` (classification) or ``<stage>/mae`` (regression, in standardised
    target units) per epoch, for ``stage`` in train, val, test; during training also ``lr`` and
    ``grad_norm/<weight>``, during validation ``dead_relu/<layer>``. The epoch's train and val figures are kept in
    :attr:`figures`, which the history, the best weights and early stopping read (test figures are logged with
    ``self.log`` as usual). Nothing goes through Lightning's ``self.log`` during training: it costs about half a
    millisecond a figure, more than a small network's optimizer step.

    Validation is the module's too: each epoch's training step ends by scoring :attr:`val_batch` (see
    :meth:`validate`), so Lightning's validation loop, whose per-epoch machinery cost more than a penguins
    epoch's steps, does not run (the trainer has ``limit_val_batches=0``).

    Args:
        net: The network; its output is (B, n_classes) logits, or (B, 1) for regression.
        cfg: The ``train`` section, sized by :func:`pipeline.config.auto.budget` (``max_epochs`` and
            ``weight_decay`` are numbers): optimizer, penalties, clipping, loss, schedule and augmentation.
        task: ``classification`` or ``regression``.
        rows_per_step: Rows per optimizer step (:meth:`TrainConfig.rows_per_step` of the train rows).
        modality: ``tabular``, ``image`` or ``sequence``: what the inputs are (for augmentation).
        class_weight: Optional per-class loss weights (K,), in class-index order (upweighting rare classes).
        val_offsets: Classification after rebalancing, with the prior correction on: per class index what the
            model bundle adds to the logits (:class:`pipeline.decision.Decision`). Validation then scores the
            corrected logits with an unweighted loss, as the registered model will predict, so early stopping and
            the kept epoch judge that model and not the rebalanced one.
        finetune: For a network started from a source (``train.init_from``), its loaded layers, which the
            optimizer steps at their own rate; :class:`~pipeline.training.callbacks.FrozenLayers` freezes them.
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        cfg: TrainConfig,
        task: str,
        rows_per_step: int,
        modality: str = "tabular",
        class_weight: list[float] | None = None,
        val_offsets: list[float] | None = None,
        finetune: Finetune | None = None,
    ) -> None:
        super().__init__()
        # the module runs the mini-batches of an epoch itself (one Lightning step per epoch, see training_step)
        self.automatic_optimization = False
        self.net = net
        self.cfg = cfg
        self.task = task
        self.rows_per_step = rows_per_step
        self.modality = modality
        self.finetune = finetune or Finetune()  # started from another network: its loaded and frozen layers
        # a buffer moves to the training device with the module and is not a trainable parameter
        self.register_buffer("class_weight", None if class_weight is None else torch.tensor(class_weight))
        self.register_buffer("val_offsets", None if val_offsets is None else torch.tensor(val_offsets))
        aug = cfg.augment
        self._augmenting = aug.flip != "none" or aug.shift > 0 or aug.noise > 0
        self._scheduler_state: dict[str, Any] | None = None  # from a checkpoint, applied once the schedule exists
        self.scheduler: Schedule | None = None
        self._penalised = penalised(net)
        self.figures: dict[str, torch.Tensor] = {}  # this epoch's train and val figures, by name
        self._relus = [(name, module) for name, module in net.named_modules() if isinstance(module, nn.ReLU)]
        # the val split as one item (inputs, targets), on the training device; taken from the data module when
        # training starts (see on_fit_start); None trains without validating
        self.val_batch: tuple[torch.Tensor | OnHost, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        return self.net(x)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out, y, weight=self.class_weight, label_smoothing=self.cfg.label_smoothing)
        return REGRESSION_LOSSES[self.cfg.regression_loss](out.squeeze(1), y)

    def _processes(self) -> tuple[int, int]:
        """The number of training processes and this one's rank (one process when no Trainer drives the module)."""
        trainer = self._trainer
        return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)

    def _share(self, out: torch.Tensor, y: torch.Tensor, batch_y: torch.Tensor) -> torch.Tensor:
        """This process's part of the loss of a batch shared between processes: the sum of its rows' losses over
        the batch's normaliser (its rows, or the sum of their class weights), so the parts add up to exactly
        the loss one process would compute on the whole batch."""
        if self.task == "classification":
            rows = F.cross_entropy(out, y, weight=self.class_weight, label_smoothing=self.cfg.label_smoothing,
                                   reduction="none")  # each row already multiplied by its class weight
            total = len(batch_y) if self.class_weight is None else self.class_weight[batch_y].sum()
            return rows.sum() / total
        return REGRESSION_LOSSES[self.cfg.regression_loss](out.squeeze(1), y, reduction="sum") / len(batch_y)

    def _penalty(self) -> torch.Tensor | float:
        """The L1 term added to the train loss (the L2 term is the optimizer's weight decay)."""
        if self.cfg.l1 == 0:
            return 0.0
        return self.cfg.l1 * sum(p.abs().sum() for p in self._penalised)

    def _clip(self) -> None:
        clip = self.cfg.gradient_clip
        if clip.mode == "norm":
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip.max)
        elif clip.mode == "value":
            torch.nn.utils.clip_grad_value_(self.net.parameters(), clip.max)

    def _metric(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of correct predictions (classification) or absolute errors (regression)."""
        if self.task == "classification":
            return (out.argmax(dim=1) == y).sum()
        return (out.squeeze(1) - y).abs().sum()

    def _log_epoch(self, stage: str, loss_sum: torch.Tensor, metric_sum: torch.Tensor, n: int) -> None:
        name = "acc" if self.task == "classification" else "mae"
        values = {f"{stage}/loss": loss_sum / n, f"{stage}/{name}": metric_sum / n}
        if stage == "test":
            self.log_dict(values, on_step=False, on_epoch=True, batch_size=n)
            return
        for key, value in values.items():
            self._report(key, value, n)

    def _report(self, name: str, value: torch.Tensor, n: int = 1) -> None:
        """Keep an epoch figure in :attr:`figures` as Lightning's epoch mean of this one value over ``n`` rows
        gives it (``value * n / n`` in float32), so the recorded figures are the very numbers it would log."""
        self.figures[name] = value.detach() * n / n

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """One epoch: mini-batches of ``rows_per_step`` rows in the order given, one optimizer step each.

        This is the loop a hand-written PyTorch script runs: it steps the torch optimizer and calls
        ``backward`` directly, because Lightning's per-step wrappers cost more than a small network's step.
        Autocast from ``precision`` still applies (Lightning wraps the whole step). Sums stay on the device
        and are logged once, so nothing waits for the device inside the loop. Under DDP every process walks
        the same permutation and takes its share of each batch (see :meth:`_backward`).
        """
        x, y, order = batch  # (N, ...), (N,), (N,) a permutation of the rows
        optimizer = self.optimizers().optimizer  # the torch optimizer itself: Lightning's wrapper costs per step
        world, rank = self._processes()
        starts = batch_starts(len(order), self.rows_per_step, min_rows=world, last=self.cfg.last_batch)
        self._ensure_schedule(optimizer, len(starts) - 1)
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch starts with (onecycle moves it per batch)
        # each step's loss and outputs are kept and summed once at the end: six tensor operations a step cost
        # about as much as a small network's optimizer step (the outputs are (N, K): K figures per row)
        losses, outputs, targets = [], [], []
        for start, end in zip(starts[:-1], starts[1:]):
            idx = order[start:end]
            mine = idx if world == 1 else idx[rank::world]  # data parallel: this process's share of the batch
            xb, yb = self._augmented(x[mine]), y[mine]  # (B, ...), (B,)
            out = self.net(xb)  # (B, K) logits or (B, 1)
            optimizer.zero_grad()
            loss = self._backward(out, yb, y[idx], world)
            self._optimizer_step(optimizer, sample_gradients=end == starts[-1])
            losses.append(loss.detach())
            outputs.append(out.detach())
            targets.append(yb)
        rows = torch.tensor([end - start for start, end in zip(starts[:-1], starts[1:])], device=x.device)
        loss_sum = (torch.stack(losses).float() * rows).sum()  # each batch's mean loss over its rows, summed
        metric_sum = self._metric(torch.cat(outputs).float(), torch.cat(targets)).float()
        self._log_train_epoch(loss_sum, metric_sum, starts[-1], lr, world)  # the rows stepped on
        if self.cfg.schedule.kind in ("step", "cosine"):
            self.scheduler.step()
        if self.val_batch is not None:
            self.validate(self.val_batch)

    def _ensure_schedule(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        """Make the configured schedule on the first epoch this process trains (it needs the steps per epoch),
        restoring a resumed checkpoint's schedule state and the optimizer settings that making it resets."""
        if self.scheduler is not None or self.cfg.schedule.kind == "none":
            return
        # a resumed optimizer's rate (and one-cycle's momentum), which making a schedule resets
        settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        self.scheduler = self.make_scheduler(optimizer, steps_per_epoch)
        if self._scheduler_state is not None:
            self.scheduler.load_state_dict(self._scheduler_state)
            for group, saved in zip(optimizer.param_groups, settings):
                group.update(saved)

    def _augmented(self, xb: torch.Tensor) -> torch.Tensor:
        """The mini-batch as ``train.augment`` changes it (drawing from the torch RNG only when it is on)."""
        if not self._augmenting:
            return xb
        aug = self.cfg.augment
        return augment(xb, self.modality, flip=aug.flip, shift=aug.shift, noise=aug.noise)

    def _backward(self, out: torch.Tensor, yb: torch.Tensor, batch_y: torch.Tensor, world: int) -> torch.Tensor:
        """Back-propagate the mini-batch's loss plus the L1 penalty; return the loss (this process's share)."""
        if world == 1:
            loss = self._loss(out, yb)
            # plain autograd: Lightning's wrapper costs per step; without L1 nothing is added (one op fewer)
            (loss if self.cfg.l1 == 0 else loss + self._penalty()).backward()
            return loss
        loss = self._share(out, yb, batch_y)
        # manual_backward lets DDP average the gradients over processes: scaled by their count, the shares add up
        # to the batch's, so each step is the step one process would take on the whole batch
        self.manual_backward(loss * world + self._penalty())
        return loss

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, sample_gradients: bool) -> None:
        """Clip and step; ``sample_gradients`` (the epoch's last step) first logs the unclipped gradient norms."""
        if sample_gradients:
            for name, norm in self._grad_norms().items():
                self._report(name, norm)
        self._clip()
        optimizer.step()
        if self.cfg.schedule.kind == "onecycle":
            self.scheduler.step()

    def _log_train_epoch(self, loss_sum: torch.Tensor, metric_sum: torch.Tensor, n: int, lr: float,
                         world: int) -> None:
        """Log the epoch's ``train/*`` figures over all ``n`` rows, and the rate it started with."""
        if world > 1:  # every process saw a share of each batch: the epoch's figures are the sums over processes
            loss_sum = self.trainer.strategy.reduce(loss_sum, reduce_op="sum")
            metric_sum = self.trainer.strategy.reduce(metric_sum, reduce_op="sum")
        self._log_epoch("train", loss_sum, metric_sum, n)
        self._report("lr", torch.tensor(lr, dtype=torch.float32))  # float32, as self.log would have kept it

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

    def make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedule:
        """The schedule ``train.schedule`` describes (kind not ``none``); epoch-based except ``onecycle``, which
        moves every batch. A warm-up (``step`` and ``cosine``; the schema refuses it for the others) ramps the
        rate linearly from ``lr / (warmup + 1)`` before the schedule takes over."""
        warmup = self.cfg.schedule.warmup_epochs
        main = SCHEDULES[self.cfg.schedule.kind](optimizer, self.cfg, steps_per_epoch)
        if warmup == 0:
            return main
        ramp = _sched.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
        return _sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])

    _val_loss: torch.Tensor | None = None

    def _grad_norms(self) -> dict[str, torch.Tensor]:
        """L2 norm of each weight's gradient (``grad_norm/<parameter>``): vanishing or exploding, layer by layer."""
        return {f"grad_norm/{name}": torch.linalg.vector_norm(p.grad.detach())
                for name, p in self.net.named_parameters() if "weight" in name and p.grad is not None}

    def on_train_epoch_start(self) -> None:
        self.figures = {}  # a fresh epoch: nothing of the last one is reported as this one's

    def on_validation_epoch_start(self) -> None:
        """Watch every ReLU during validation: a unit that is never positive on any val row is dead (a network
        without ReLUs gets no hooks)."""
        self._alive: dict[str, torch.Tensor] = {}
        self._hooks = [module.register_forward_hook(self._watch(name)) for name, module in self._relus]

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
        for name, alive in getattr(self, "_alive", {}).items():
            self._report(f"dead_relu/{name}", 1.0 - alive.float().mean())
        if self.cfg.schedule.kind == "plateau" and self.scheduler is not None and self._val_loss is not None:
            self.scheduler.step(float(self._val_loss))

    def _evaluate(self, batch: tuple[torch.Tensor | OnHost, torch.Tensor], stage: str) -> torch.Tensor:
        """Score a whole split: the forward pass in chunks of ``train.eval_chunk`` examples (on the targets'
        device), then the loss and metric once over every row's output, as one pass would compute them."""
        x, y = batch
        x = x.tensor if isinstance(x, OnHost) else x  # a split larger than a chunk, kept in host memory
        out = chunked_forward(self.net, x, self.cfg.eval_chunk, y.device)  # (N, K): the activations are bounded
        if self.val_offsets is not None:  # judged as the bundle will predict: at the natural class balance
            out = out + self.val_offsets
            loss = F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)
        else:
            loss = self._loss(out, y)
        if stage == "val":
            self._val_loss = loss.detach()  # what a plateau schedule reacts to
        self._log_epoch(stage, loss * len(y), self._metric(out, y).float(), len(y))
        return loss

    def on_fit_start(self) -> None:
        """Take the val split from the data module, already on the training device (a split larger than
        ``train.eval_chunk`` stays in host memory, see :class:`~pipeline.training.data.FullBatch`)."""
        data = self.trainer.datamodule
        if data is not None and hasattr(data, "val_dataloader"):
            self.val_batch = next(iter(data.val_dataloader()))

    def validate(self, batch: tuple[torch.Tensor | OnHost, torch.Tensor]) -> None:
        """Score the val split with the epoch's final weights, in eval mode and without gradients, as Lightning's
        validation loop would: the ReLU watch, the figures, and a plateau schedule's step.

        Under DDP the processes first take the first process's buffers (batch-norm running statistics, which
        each process updated from its own share of the batches), as DDP's forward pass does: every process then
        scores the weights the first one keeps, and all reach the same early-stopping decision.
        """
        if self._processes()[0] > 1:
            for buffer in self.net.buffers():
                torch.distributed.broadcast(buffer, src=0)
        self.net.eval()
        self.on_validation_epoch_start()
        try:
            with torch.no_grad():
                self._evaluate(batch, "val")
        finally:
            self.on_validation_epoch_end()
            self.net.train()

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
        groups = param_groups(net, self.finetune.loaded, self.cfg.lr, self.finetune.loaded_lr_factor,
                              self.cfg.weight_decay)  # loaded layers (a fine-tuning's) in groups of their own
        return OPTIMIZERS[self.cfg.optimizer](groups, self.cfg)
