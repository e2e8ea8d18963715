"""Restarts: the same network trained from several seeds, the best chosen on validation (never on test)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from pipeline.config import Params
from pipeline.training.fit import FitResult, fit
from pipeline.training.transfer import Parent

# What fit calls after each epoch with that epoch's metrics (MLflow's log_metrics, in the stage).
Sink = Callable[[dict[str, float], int], None]
# Runs one restart: given its index, its params and the fit (to call with a sink or None), returns that fit.
# The train stage passes one that opens each restart's MLflow run around the fit; without one nothing is tracked.
RestartRunner = Callable[[int, Params, Callable[[Sink | None], FitResult]], FitResult]


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The seed of each restart: ``seed`` itself, then ``seed + 1``, ... (wrapping within the 32-bit range)."""
    return [(seed + i) % 2**32 for i in range(restarts)]


def best_restart(results: list[FitResult], direction: str) -> int:
    """The restart whose best validation value (the early-stopping monitor) is best; the first on a tie."""
    values = [r.best_value if direction == "min" else -r.best_value for r in results]
    return values.index(min(values))


def restart_plan(params: Params, checkpoints: Path) -> list[tuple[Params, Path]]:
    """Each restart's params (its seed; the range test only in the first) and checkpoint folder."""
    if params.train.restarts == 1:
        return [(params, checkpoints)]
    plan = []
    for i, seed in enumerate(restart_seeds(params.seed, params.train.restarts)):
        # the range test is about the data and the net, not the draw: once is enough
        train = params.train.model_copy(update={"lr_find": params.train.lr_find and i == 0})
        plan.append((params.model_copy(update={"seed": seed, "train": train}), checkpoints / f"restart-{i}"))
    return plan


def untracked(index: int, settings: Params, fit_one: Callable[[Sink | None], FitResult]) -> FitResult:
    """The :data:`RestartRunner` that tracks nothing: the fit, without a sink."""
    return fit_one(None)


def fit_restarts(params: Params, scaled: Path, n_outputs: int, class_weight: list[float] | None, task: str,
                 checkpoints: Path, val_offsets: list[float] | None = None,
                 runner: RestartRunner = untracked, parent: Parent | None = None) -> list[FitResult]:
    """Train ``train.restarts`` networks, each from its own seed and in its own checkpoint folder (one restart: the
    params as they are, in ``checkpoints`` itself).

    Args:
        params: The resolved params.
        scaled: The scale stage's output folder.
        n_outputs: The network's outputs (classes, or 1 for regression).
        class_weight: Loss weight per class index, or ``None``.
        task: ``classification`` or ``regression``.
        checkpoints: The folder for training checkpoints.
        val_offsets: Logit offsets validation judges the network with (prior correction), or ``None``.
        runner: Runs each restart's fit (see :data:`RestartRunner`); the default tracks nothing.
        parent: The network every restart starts from (``train.init_from``), or ``None``.

    Returns:
        Each restart's fit, in order.
    """
    results = []
    for i, (settings, folder) in enumerate(restart_plan(params, checkpoints)):
        fit_one = partial(_fit_one, settings, scaled, n_outputs, class_weight, task, folder, val_offsets, parent)
        results.append(runner(i, settings, fit_one))
    return results


def _fit_one(settings: Params, scaled: Path, n_outputs: int, class_weight: list[float] | None, task: str,
             folder: Path, val_offsets: list[float] | None, parent: Parent | None, sink: Sink | None) -> FitResult:
    """One restart's fit, reporting each epoch to ``sink``."""
    return fit(settings, scaled, n_outputs, sink, class_weight, task, checkpoints=folder, val_offsets=val_offsets,
               parent=parent)
