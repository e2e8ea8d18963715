"""A learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017).

A copy of the network trains for a few mini-batches while the learning rate grows exponentially; the loss first
barely moves, then falls, then blows up. The suggested rate is where the smoothed loss falls fastest, the same
rule as fastai's and Lightning's ``lr_find``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.reporting import _pyplot, _save

BETA = 0.98  # weight of the running loss in the exponential moving average
DIVERGE = 4.0  # stop once the smoothed loss exceeds this multiple of the best smoothed loss so far
MIN_POINTS = 10  # finite losses needed for a suggestion worth having
SKIP_BEGIN = 10  # leading points ignored when suggesting: the average is still settling there (as Lightning)
SKIP_END = 1  # trailing points ignored: the last is often the step that diverged


@dataclass(frozen=True)
class LRFinding:
    """What a range test saw.

    Attributes:
        lrs: The learning rate of each recorded step, growing exponentially.
        losses: The training loss at each step, smoothed (bias-corrected exponential moving average, beta 0.98).
        suggestion: The rate at the steepest descent of the smoothed loss against log(lr).
    """

    lrs: list[float]
    losses: list[float]
    suggestion: float


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless row indices, ``min(batch_size, n)`` at a time, from back-to-back random permutations of ``n`` rows.

    Batches run across the seam between two permutations, so every step sees the same number of rows (a
    short last batch would give a noisy loss, and a batch of one breaks batch norm in train mode).
    """
    size = min(batch_size, n)
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:size]
        pending = pending[size:]


def _suggest(lrs: list[float], losses: list[float]) -> float:
    """The rate where the smoothed loss has its most negative slope against log10(lr)."""
    skip = min(SKIP_BEGIN, len(lrs) // 4)  # a short test keeps most of its points
    kept_lrs = np.asarray(lrs[skip : len(lrs) - SKIP_END])
    kept_losses = np.asarray(losses[skip : len(losses) - SKIP_END])
    slopes = np.gradient(kept_losses, np.log10(kept_lrs))
    return float(kept_lrs[int(np.argmin(slopes))])


def _check(x: torch.Tensor, y: torch.Tensor, batch_size: int, start: float, end: float, steps: int) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"lr_find: expected as many targets as input rows (at least one), got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"lr_find: batch_size: expected an integer >= 1, got {batch_size}")
    if not (0 < start < end and math.isfinite(end)):
        raise ValueError(f"lr_find: start, end: expected 0 < start < end, got start = {start}, end = {end}")
    if steps < MIN_POINTS:
        raise ValueError(f"lr_find: steps: expected at least {MIN_POINTS} to suggest a rate, got {steps}")


@contextlib.contextmanager
def _seeded_fork(device: torch.device, seed: int) -> Iterator[None]:
    """Inside, the global torch RNG (the CPU's, and ``device``'s on CUDA) starts from ``seed`` and gradients are on;
    after, the RNG is as it was before."""
    forked = [] if device.type == "cpu" else [device]
    # enable_grad: the caller may sit in a no-grad context (a Lightning hook), but the copy must train
    with torch.random.fork_rng(devices=forked, device_type=device.type if forked else None), torch.enable_grad():
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _range_test(
    trial: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Iterator[torch.Tensor],
    start: float,
    end: float,
    steps: int,
) -> tuple[list[float], list[float], float]:
    """Train ``trial`` one batch per rate; the rates and smoothed losses recorded, and the last rate tried."""
    lrs: list[float] = []
    losses: list[float] = []
    average, best, lr = 0.0, math.inf, start
    # each group keeps its share of the optimizer's rate (a fine-tuning's loaded layers: train.loaded_lr_factor),
    # so the rate found is train.lr's as it will be used; with one rate for all, every share is exactly 1
    shares = [group["lr"] / optimizer.defaults["lr"] for group in optimizer.param_groups]
    for step in range(steps):
        lr = start * (end / start) ** (step / (steps - 1))
        for group, share in zip(optimizer.param_groups, shares, strict=True):
            group["lr"] = lr * share
        idx = next(batches).to(x.device)
        loss = loss_fn(trial(x[idx]), y[idx])
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average = BETA * average + (1 - BETA) * value
        smoothed = average / (1 - BETA ** (step + 1))  # the average starts at 0: undo that pull towards 0
        lrs.append(lr)
        losses.append(smoothed)
        if smoothed > DIVERGE * best:
            break
        best = min(best, smoothed)
    return lrs, losses, lr


def find_lr(
    net: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seed: int,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
    hold: Callable[[nn.Module], None] | None = None,
) -> LRFinding:
    """Train a copy of ``net`` while the learning rate grows from ``start`` to ``end``; suggest a rate.

    Step ``i`` of ``steps`` uses ``start * (end / start) ** (i / (steps - 1))``, times each parameter group's
    share of the optimizer's rate as ``make_optimizer`` set it (1 but for a fine-tuning's loaded layers). The
    test stops early once the smoothed loss exceeds 4x its best (diverged) or the loss is not finite (that step
    is not recorded). Neither ``net`` nor the global RNG state changes, so training afterwards runs exactly as
    it would without the test; the test itself is a function of its arguments (``seed`` drives the batches
    and, inside the test only, dropout).

    Args:
        net: The network, on ``x``'s device; it is deep-copied, never trained.
        loss_fn: ``loss_fn(net(xb), yb)``, a scalar tensor.
        make_optimizer: Builds the optimizer for the copy (its lr is overwritten every step).
        x: All training inputs, (N, ...).
        y: The targets, (N,).
        batch_size: Rows per step (capped at N).
        seed: Seeds the mini-batch permutations and the copy's dropout.
        start: The first learning rate.
        end: The last learning rate, reached if the loss never diverges.
        steps: Mini-batches to train at most (at least 10).
        hold: Called on the copy once it is in training mode: what the first epoch holds fixed (a fine-tuning's
            frozen layers and their batch-norm statistics) stays fixed during the test too.

    Returns:
        The rates, smoothed losses and the suggested rate.

    Raises:
        ValueError: Bad arguments, or fewer than 10 steps gave a finite loss.
    """
    _check(x, y, batch_size, start, end, steps)
    with _seeded_fork(x.device, seed):
        trial = copy.deepcopy(net).train()
        if hold is not None:
            hold(trial)
        optimizer = make_optimizer(trial)
        batches = _batches(len(x), batch_size, torch.Generator().manual_seed(seed))
        lrs, losses, lr = _range_test(trial, loss_fn, optimizer, x, y, batches, start, end, steps)
    if len(lrs) < MIN_POINTS:
        raise ValueError(f"lr_find: expected at least {MIN_POINTS} steps with a finite, non-diverging loss, got "
                         f"{len(lrs)} (the loss blew up at lr = {lr:.3g}); lower start (now {start:g}) or end "
                         f"(now {end:g}), or raise steps (now {steps})")
    return LRFinding(lrs=lrs, losses=losses, suggestion=_suggest(lrs, losses))


def lr_find_png(path: Path, finding: LRFinding, current_lr: float, title: str) -> None:
    """Plot the smoothed loss against the learning rate (log axis), the suggestion and the rate in use."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(finding.lrs, finding.losses, label="smoothed training loss")
    at = finding.lrs.index(finding.suggestion)
    ax.plot([finding.suggestion], [finding.losses[at]], marker="o", markersize=9, color="tab:red", linestyle="none",
            label=f"suggestion {finding.suggestion:.3g}")
    ax.axvline(current_lr, color="grey", linestyle="--", label=f"train.lr {current_lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    _save(fig, path)
