"""Cross-validation: K networks, each trained on K-1 folds of train+val and validated on the remaining one, with
the data stages refitted on every fold's own train rows. The test split is never read.

:func:`cross_validate` does the work (the ``cv`` command, and search trials with ``tune.objective: cv``); each
fold is one child MLflow run when a fold opener is given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Params
from pipeline.tuning.scoring import EpochRunner, fit_and_score

if TYPE_CHECKING:
    import optuna

# Opens fold i's MLflow run (yielding its id) around its training; the default opens none.
FoldOpener = Callable[[int], AbstractContextManager[str | None]]


@dataclass(frozen=True)
class FoldScore:
    """One fold's validation metrics (``val/accuracy`` ...), its MLflow run, epochs and seconds."""

    fold: int
    metrics: dict[str, float]
    run_id: str | None
    epochs: int
    seconds: float


@dataclass(frozen=True)
class CVResult:
    """Every fold's scores; the mean and standard deviation of each validation metric across them."""

    folds: list[FoldScore]

    @property
    def names(self) -> list[str]:
        """The metrics every fold has (a class absent from one fold's val rows has no per-class figure there)."""
        common = set.intersection(*(set(f.metrics) for f in self.folds))
        return [name for name in self.folds[0].metrics if name in common]

    @property
    def mean(self) -> dict[str, float]:
        """Each metric's mean over the folds."""
        return {n: sum(f.metrics[n] for f in self.folds) / len(self.folds) for n in self.names}

    @property
    def std(self) -> dict[str, float]:
        """Each metric's sample standard deviation over the folds (n - 1: K folds are a sample of splits)."""
        k, mean = len(self.folds), self.mean
        if k < 2:
            return {n: 0.0 for n in self.names}
        return {n: math.sqrt(sum((f.metrics[n] - mean[n]) ** 2 for f in self.folds) / (k - 1)) for n in self.names}

    def summary(self) -> dict[str, float]:
        """``cv/<metric>/mean`` and ``cv/<metric>/std`` for MLflow, plus the mean as ``<metric>`` itself."""
        out = {f"cv/{n}/mean": v for n, v in self.mean.items()}
        out.update({f"cv/{n}/std": v for n, v in self.std.items()})
        return {**out, **self.mean}


def cross_validate(params: Params, raw: Path, split: Path, k: int, cache: Path, work: Path,
                   open_fold: FoldOpener | None = None,
                   after_fold: Callable[[FoldScore], None] | None = None) -> CVResult:
    """Train and validate ``params`` on each of ``k`` folds of train+val.

    Args:
        params: The validated params, resolved for the task.
        raw: Ingest's output folder.
        split: The split stage's output folder (its train and val rows are folded; test is copied, never read).
        k: The number of folds.
        cache: Where the folds and each fold's cleaned and scaled data are written (reused when unchanged).
        work: A folder for the folds' checkpoints and models (removed as each fold ends).
        open_fold: Opens each fold's MLflow run (see :data:`FoldOpener`); ``None`` tracks nothing.
        after_fold: Called with each fold's score as it finishes (a search reports it to its pruner).

    Returns:
        Each fold's validation metrics.

    Raises:
        PipelineError: On a bad ``k`` (naming ``tune.folds``) or a failed training.
    """
    from pipeline.tuning.folds import write_folds
    from pipeline.tuning.prepare import prepare

    scores = []
    for i, fold_split in enumerate(write_folds(params, raw, split, k, cache / "folds")):
        started = time.perf_counter()
        prepared = prepare(params, raw, fold_split, cache)
        with (open_fold or (lambda _: nullcontext(None)))(i) as run_id:
            scored = fit_and_score(params, prepared, work / f"fold-{i}", EpochRunner(run_id))
            score = FoldScore(i, scored.metrics, run_id, scored.result.kept.epochs, time.perf_counter() - started)
            if run_id is not None:
                _log_fold(run_id, score)
        scores.append(score)
        if after_fold is not None:
            after_fold(score)
    return CVResult(scores)


def _log_fold(run_id: str, score: FoldScore) -> None:
    """The fold's validation metrics and epochs on its run."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import MetricsBuffer

    buffer = MetricsBuffer(run_id)
    buffer({**score.metrics, "epochs": score.epochs}, 0)
    buffer.flush()
    MlflowClient().set_tag(run_id, "cv.fold", str(score.fold))


def nested_folds(experiment_id: str) -> FoldOpener:
    """Each fold in a run nested in the active one (the ``cv`` command's, or a search trial's)."""

    @contextmanager
    def open_fold(index: int) -> Iterator[str | None]:
        import mlflow

        from pipeline import tracking

        with tracking.tracked_run(experiment_id=experiment_id, run_name=f"fold {index}", nested=True) as run:
            mlflow.set_tag("cv.fold", str(index))
            yield run.info.run_id

    return open_fold


def fold_pruner(trial: optuna.Trial, metric: str) -> Callable[[FoldScore], None]:
    """Report each fold's value of ``metric`` to ``trial`` (step = fold) and raise ``TrialPruned`` when told."""
    import optuna

    def report(score: FoldScore) -> None:
        trial.report(score.metrics[f"val/{metric}"], score.fold)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", f"fold {score.fold}")
            raise optuna.TrialPruned(f"pruned after fold {score.fold}")

    return report
