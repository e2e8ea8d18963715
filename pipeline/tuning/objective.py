"""One search trial: its params drawn from the space and checked by the schema, its data prepared (or shared), the
network trained and scored on validation (or cross-validated), all in one child MLflow run of the study's run.

A trial's run ends FINISHED when it completes or is pruned (tag ``tune.state`` says which), FAILED when its
training fails, KILLED when the search is stopped; the Optuna trial records the run's id, and the run the study
and trial number.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params, flatten, require_task
from pipeline.errors import PipelineError, Terminated
from pipeline.tuning.scoring import EpochRunner, fit_and_score

if TYPE_CHECKING:
    import optuna

    from pipeline.config.tune import Direction, TuneConfig
    from pipeline.tuning.prepare import Prepared


@dataclass
class Search:
    """What every trial of one search shares: the base params, the space, where data and runs go."""

    root: Path
    raw: dict[str, Any]  # params.yaml as read: each trial's keys are set on a copy, then validated
    params: Params  # params.yaml, resolved for the task
    tune: TuneConfig
    task: str
    metric: str  # the objective's metric name (``accuracy``, ``rmse`` ...), on validation
    direction: Direction
    study: str
    experiment_id: str
    parent_run_id: str
    workspace: Prepared  # the data stages' outputs for params.yaml's own data configuration
    storage_url: str  # the study's database, for the workers --jobs starts
    tags: dict[str, str] = field(default_factory=dict)  # what every trial run is tagged with (git, environment)

    @property
    def cache(self) -> Path:
        """Where data configurations other than params.yaml's are prepared, and CV folds written."""
        from pipeline.tuning.study import TUNE_DIR

        return self.root / TUNE_DIR / "data"

    def work(self, number: int) -> Path:
        """Trial ``number``'s working folder (checkpoints, its model); a retried trial takes its original's, so
        its training resumes from the checkpoint the killed one left."""
        from pipeline.tuning.study import TUNE_DIR

        return self.root / TUNE_DIR / "work" / self.study / f"trial-{number}"


def trial_settings(search: Search, trial: optuna.Trial) -> tuple[dict[str, Any], Params]:
    """The trial's values by dotted key, and the params they make, validated and resolved for the task.

    Raises:
        PipelineError: Naming the trial when the schema refuses the combination.
    """
    from pipeline.tuning.space import base_point, suggest, trial_params

    space = search.tune.space
    if trial.user_attrs.get("start") == "params.yaml":  # the first trial: what the space does not hold stays as is
        space = {key: space[key] for key in base_point(space, search.params)}
    values = suggest(trial, space)
    params = trial_params(search.raw, values, f"tune trial {trial.number}")
    return values, require_task(params, search.task)


def prepared_for(search: Search, params: Params) -> Prepared:
    """The data stages' outputs for ``params``: the workspace's own when its data configuration is params.yaml's,
    else prepared once in the cache with the stages' own functions and shared by every trial that has it."""
    from pipeline.tuning.prepare import data_key, prepare

    if data_key(params) == data_key(search.params):
        return search.workspace
    return prepare(params, search.workspace.raw, search.workspace.split, search.cache)


def objective(search: Search, trial: optuna.Trial) -> float:
    """Run one trial in its own MLflow run; the value Optuna optimises.

    Raises:
        optuna.TrialPruned: When the pruner stops it (its run is FINISHED, tagged ``tune.state = pruned``).
        PipelineError: When its params or its training fail (its run FAILED, the message on the trial).
    """
    from pipeline import tracking
    from pipeline.tuning.study import requeue, retried_from

    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    retry_of = retried_from(trial)
    started = time.perf_counter()
    name = f"trial {trial.number}" + (f" (retry of {retry_of})" if retry_of is not None else "")
    try:
        with tracking.tracked_run(experiment_id=search.experiment_id, run_name=name,
                                  parent_run_id=search.parent_run_id) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            outcome = _tracked_trial(search, trial, run.info.run_id, retry_of)
    except (KeyboardInterrupt, Terminated):
        # Optuna marks the trial FAIL; queue its params again so a rerun finishes it instead of losing it
        requeue(trial.study, trial.study._storage.get_trial(trial._trial_id))
        raise
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _tracked_trial(search: Search, trial: optuna.Trial, run_id: str, retry_of: int | None) -> float | BaseException:
    """The trial inside its active run: the value, or the pruning to raise once the run has ended FINISHED.

    Raises:
        PipelineError: On a failure (the run ends FAILED around it).
    """
    import mlflow
    import optuna

    mlflow.set_tags({**search.tags, "tune.study": search.study, "tune.trial": str(trial.number),
                     "tune.state": "running", "task": search.task})
    try:
        values, params = trial_settings(search, trial)
        mlflow.log_params({**flatten(params), **{f"tune.{k}": v for k, v in values.items()}})
        mlflow.set_tags({"seed": str(params.seed), "model.kind": params.model.kind})
        value, metrics = _score(search, trial, params, run_id, retry_of)
    except optuna.TrialPruned as pruned:
        mlflow.set_tags({"tune.state": "pruned", "tune.pruned_at": str(trial.user_attrs.get("pruned_at", "?"))})
        return pruned
    except PipelineError as exc:
        trial.set_user_attr("error", str(exc))
        mlflow.set_tags({"tune.state": "failed", "tune.error": str(exc)[:5000]})
        raise
    mlflow.log_metrics({**metrics, "objective": value})
    mlflow.set_tag("tune.state", "complete")
    return value


def _score(search: Search, trial: optuna.Trial, params: Params, run_id: str,
           retry_of: int | None) -> tuple[float, dict[str, float]]:
    """The trial's objective and metrics: validation of one training, or the mean over cross-validation folds."""
    work = search.work(trial.number if retry_of is None else int(retry_of))
    if search.tune.objective == "cv":
        from pipeline.tuning.cv import cross_validate, fold_pruner, nested_folds

        result = cross_validate(params, search.workspace.raw, search.workspace.split, search.tune.folds,
                                search.cache, work, nested_folds(search.experiment_id),
                                fold_pruner(trial, search.metric))
        return result.mean[f"val/{search.metric}"], result.summary()
    prepared = prepared_for(search, params)
    report = epoch_pruner(trial, params, search.direction, search.tune) if search.tune.pruner != "none" else None
    scored = fit_and_score(params, prepared, work, EpochRunner(run_id, report))
    return scored.value(search.metric), {**scored.metrics, "epochs": scored.result.kept.epochs,
                                         "best_epoch": scored.result.kept.best_epoch}


def epoch_pruner(trial: optuna.Trial, params: Params, direction: Direction, tune: TuneConfig):
    """Report the early-stopping monitor to ``trial`` at the epochs the pruner looks at (``tune.pruner_warmup_epochs``
    and every ``tune.pruner_interval_epochs`` after), and raise ``TrialPruned`` when it says so.

    The monitor (``val/loss`` by default) is what training itself judges epochs by; its sign is flipped when it
    improves the other way from the objective, so the pruner compares like with like. Only the epochs it looks at
    are reported: each report is a write to the study database. Which epochs those are depends on the epoch alone,
    so a seeded search prunes the same trials every time.
    """
    import optuna

    stop = params.train.early_stopping
    sign = 1.0 if (stop.direction == "min") == (direction == "minimize") else -1.0
    warmup, interval = tune.pruner_warmup_epochs, tune.pruner_interval_epochs

    def report(metrics: dict[str, float], epoch: int) -> None:
        if epoch < warmup or (epoch - warmup) % interval:
            return
        value = metrics.get(stop.monitor)
        if value is None or value != value:  # a non-finite epoch: training stops on it by itself
            return
        trial.report(sign * value, epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", f"epoch {epoch}")
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {stop.monitor} {value:.4g}")

    return report
