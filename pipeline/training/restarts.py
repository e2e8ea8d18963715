"""Restarts: the same network trained from several seeds, the best chosen on validation (never on test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.training.fit import FitResult, fit

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


def fit_restarts(params: Params, experiment: str, args: Any, n_outputs: int, class_weight: list[float] | None,
                 task: str, val_offsets: list[float] | None = None) -> tuple[list[FitResult], list[str]]:
    """Train ``train.restarts`` networks, each from its own seed, each in a nested MLflow run of the active one.

    Returns:
        Each restart's fit, and its MLflow run id.
    """
    import mlflow

    from pipeline import tracking

    plan = restart_plan(params, args.checkpoints)
    results, run_ids = [], []
    for i, (settings, folder) in enumerate(plan):
        seed = settings.seed
        with tracking.tracked_run(experiment_id=experiment, run_name=f"restart {i} (seed {seed})", nested=True) as run:
            mlflow.log_params({"restart": i, "seed": seed})
            mlflow.set_tags({"seed": str(seed), "restart": str(i), "model.kind": params.model.kind, "task": task})
            print(f"train: restart {i + 1} of {len(plan)} (seed {seed})", flush=True)
            result = fit(settings, args.scaled, n_outputs, lambda m, e: mlflow.log_metrics(m, step=e), class_weight,
                         task, checkpoints=folder, val_offsets=val_offsets)
            mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs,
                                f"best/{params.train.early_stopping.monitor}": result.best_value})
        results.append(result)
        run_ids.append(run.info.run_id)
    return results, run_ids
