"""The ``tune`` and ``cv`` commands: bring the data stages up to date through DVC, set the search (or the folds)
up from params.yaml, run it, report it.

    python -m pipeline tune [--jobs N] [--study NAME] [--storage URL] [--apply]
    python -m pipeline cv [--folds K]
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten, parse_params, read_raw_params, require_task
from pipeline.errors import PipelineError
from pipeline.plumbing import dvc_command
from pipeline.tuning.objective import Search


WORKER_ENV = "PIPELINE_TUNE_WORKER"  # the number (1, 2, ...) of each further process --jobs starts


@dataclass(frozen=True)
class Workspace:
    """The params and the data stages' outputs a search or cross-validation starts from."""

    root: Path
    raw: dict[str, Any]  # params.yaml as read
    params: Params  # resolved for the task
    task: str


def bring_data_up_to_date(root: Path, what: str) -> None:
    """``dvc repro scale``: the data stages' outputs for params.yaml as it is now, computed or reused by DVC.

    Raises:
        PipelineError: When DVC fails (its own message has been printed above).
    """
    print(f"{what}: bringing the data stages up to date (dvc repro scale)", flush=True)
    done = subprocess.run([dvc_command(), "repro", "--quiet", "scale"], cwd=root, check=False)
    if done.returncode != 0:
        raise PipelineError(f"{what}: dvc repro scale exited {done.returncode}")


def read_workspace(root: Path, params_file: Path, what: str, repro: bool = True) -> Workspace:
    """params.yaml read and checked, the data stages brought up to date, the params resolved for the task."""
    from pipeline.stages.common import read_schema
    from pipeline.tuning.prepare import workspace_prepared

    from pipeline.config.tune import require_tune

    raw = read_raw_params(params_file)
    params = parse_params(raw, str(params_file))
    require_tune(params)  # both commands read it: a missing section stops before any work
    if repro:
        bring_data_up_to_date(root, what)
    task = read_schema(workspace_prepared(root).raw).task
    return Workspace(root, raw, require_task(params, task), task)


def environment_tags(root: Path) -> dict[str, str]:
    """The git and environment tags every trial and fold run carries (computed once per process)."""
    from pipeline import tracking

    return {**tracking.git_tags(root), **tracking.environment_tags(root)}


def cmd_cv(args: Any) -> None:
    """``python -m pipeline cv``: K folds of train+val, one child run each, the mean and spread printed."""
    import mlflow

    from pipeline import tracking
    from pipeline.config.tune import require_tune
    from pipeline.tuning.cv import cross_validate, nested_folds
    from pipeline.tuning.study import TUNE_DIR

    root = Path.cwd()
    space = read_workspace(root, args.params, "cv")
    k = args.folds if args.folds is not None else require_tune(space.params).folds
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, space.params.experiment_name, root)
    with tracking.tracked_run(experiment_id=experiment, run_name=f"cv ({k} folds)") as run:
        mlflow.log_params({**flatten(space.params), "cv.folds": k})
        mlflow.set_tags({**environment_tags(root), "cv.folds": str(k), "task": space.task})
        work = root / TUNE_DIR / "work" / f"cv-{run.info.run_id}"
        try:
            result = cross_validate(space.params, root / "data" / "raw", root / "data" / "split", k,
                                    root / TUNE_DIR / "data", work, nested_folds(experiment), after_fold=_print_fold)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # each fold's checkpoints and model: no use once it is scored
        mlflow.log_metrics(result.summary())
    for name in result.names:
        if "/" not in name.removeprefix("val/"):  # the per-class figures stay in MLflow
            print(f"cv: {name:<22} {result.mean[name]:.4f} +- {result.std[name]:.4f}")
    print(f"cv: {k} folds of train+val; MLflow run {run.info.run_id} (one child run per fold); test not used")


def _print_fold(score: Any) -> None:
    """One line per finished fold."""
    shown = ", ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in score.metrics.items()
                      if k.count("/") == 1)
    print(f"cv: fold {score.fold}: {shown} ({score.epochs} epochs, {score.seconds:.1f} s)", flush=True)


def cmd_tune(args: Any) -> None:
    """``python -m pipeline tune``: the search of params.yaml's ``tune`` section."""
    from pipeline.errors import Terminated, sigterm_raises
    from pipeline.tuning.report import print_result
    from pipeline.tuning.search import work
    from pipeline.tuning.study import open_study

    with sigterm_raises():
        space = read_workspace(Path.cwd(), args.params, "tune", repro=not args.no_repro)
        search, study = open_study(space, args.study, args.storage, int(os.environ.get(WORKER_ENV, "0")))
        workers, status = [], "FAILED"
        try:
            workers = start_workers(args, search) if args.jobs > 1 else []
            work(search, study, args.jobs)
            status = "FINISHED"
        except (KeyboardInterrupt, Terminated):
            status = "KILLED"
            raise
        finally:
            failed = wait_workers(workers)
            _end_parent(search, study, status)
    if failed:
        raise PipelineError(f"tune: {failed} of {len(workers)} worker processes failed (their lines are above)")
    if os.environ.get(WORKER_ENV):
        return  # a worker of --jobs: the process that started it reports the result
    command = print_result(search, study)
    if args.apply:
        apply(command, search, study)


def _end_parent(search: Search, study: Any, status: str) -> None:
    """The best trial and plots on the study's run, and the run ended ``status`` (each worker ends it as it
    stops; a rerun reopens it as RUNNING)."""
    from mlflow.tracking import MlflowClient

    from pipeline.tuning.report import update_parent

    try:
        update_parent(search, study)
    finally:
        MlflowClient().set_terminated(search.parent_run_id, status)


def start_workers(args: Any, search: Search) -> list[subprocess.Popen]:
    """``--jobs N``: N - 1 more processes on the same study (this one is the N-th)."""
    from pipeline.tuning.study import STORAGE_ENV

    command = [sys.executable, "-m", "pipeline", "tune", "--no-repro", "--study", search.study,
               "--params", str(args.params)]
    env = {**os.environ, STORAGE_ENV: search.storage_url}
    return [subprocess.Popen(command, env={**env, WORKER_ENV: str(i)}) for i in range(1, args.jobs)]


def wait_workers(workers: list[subprocess.Popen]) -> int:
    """Wait for the workers (stopping them on Ctrl-C); how many failed."""
    try:
        codes = [w.wait() for w in workers]
    except BaseException:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait()
        raise
    return sum(code != 0 for code in codes)


def apply(command: list[str], search: Search, study: Any) -> None:
    """``tune --apply``: run the best params through the pipeline, the train stage tagging its run with the
    study and trial (and evaluate the registered version)."""
    from pipeline.tuning.report import STUDY_ENV, TRIAL_ENV

    best = study.best_trial
    forced = [dvc_command(), *command[1:3], "--force", *command[3:]]  # a fresh train run, never a cached one
    shown = shlex.join([*command[:3], "--force", *command[3:]])
    print(f"tune: applying trial {best.number}: {shown}", flush=True)
    env = {**os.environ, STUDY_ENV: search.study, TRIAL_ENV: str(best.number)}
    done = subprocess.run(forced, cwd=search.root, env=env, check=False)
    if done.returncode != 0:
        raise PipelineError(f"tune --apply: dvc exp run exited {done.returncode}")
