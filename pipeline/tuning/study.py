"""Where a search's Optuna study lives and how it is opened: the database, the sampler and pruner, the study's
name, and the trials a killed worker left RUNNING.

The study is a database so that several processes - ``tune --jobs N`` on one machine, or ``tune`` on several
machines given the same ``--storage`` - draw trials from one study, and so that a killed search resumes when it
is run again. By default it is a SQLite file in the workspace (``.tune/study.db``, git-ignored); with the team
server of ``python -m pipeline server start`` running in the workspace, a database of its PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import optuna

    from pipeline.config import Params
    from pipeline.config.tune import TuneConfig
    from pipeline.tuning.commands import Workspace
    from pipeline.tuning.objective import Search

TUNE_DIR = Path(".tune")  # the study database, prepared data and each trial's working folder; git-ignored
STUDY_DB = "optuna"  # the team server's PostgreSQL database for studies (beside MLflow's)
STORAGE_ENV = "PIPELINE_TUNE_STORAGE"  # a study database URL, as --storage gives it
# A worker's trials send a heartbeat this often; one silent for the grace period is taken for dead (its machine
# lost, its process killed), marked FAIL and queued again with the same params. A worker on this machine also
# fails at once the trials of its own host whose process is gone (see stale_trials).
HEARTBEAT_S = 30
GRACE_S = 120
MAX_RETRIES = 3  # a trial killed this often is left failed rather than queued again
WORKER_SEED_STRIDE = 1_000_003  # worker i's sampler seed is offset by i times this (a prime: no two workers meet)
SQLITE_TIMEOUT_S = 60  # workers on one SQLite file wait this long for each other's writes


@dataclass(frozen=True)
class Storage:
    """A study database: its SQLAlchemy URL and what to call it in messages (no password in either)."""

    url: str
    description: str


def team_server_storage(root: Path) -> Storage | None:
    """The study database in the PostgreSQL of the team server running in ``root/.server``, created if needed,
    or ``None`` when no server runs there."""
    from pipeline import server
    from pipeline.server.layout import DEFAULT_DIR, Layout
    from pipeline.server.postgres import backend_uri, create_databases

    folder = root / DEFAULT_DIR
    if not (folder / "state.json").is_file():
        return None
    now = server.status(folder)
    if not now.running:
        return None
    layout, port = Layout(folder.absolute()), int(now.state["pg_port"])
    create_databases(layout, port, (STUDY_DB,))
    os.environ.setdefault("PGPASSFILE", str(layout.pgpass))  # libpq reads the password there, as MLflow's server does
    url = backend_uri(port, STUDY_DB)
    return Storage(url, f"the team server's PostgreSQL ({url})")


def resolve_storage(root: Path, given: str | None) -> Storage:
    """``--storage``, else ``$PIPELINE_TUNE_STORAGE``, else the team server's PostgreSQL, else ``.tune/study.db``."""
    url = given or os.environ.get(STORAGE_ENV)
    if url:
        if "://" not in url:
            raise PipelineError(f"--storage = {url!r}: expected a database URL such as sqlite:///study.db or "
                                "postgresql+psycopg2://user@host:5432/optuna")
        return Storage(url, _without_password(url))
    found = team_server_storage(root)
    if found is not None:
        return found
    (root / TUNE_DIR).mkdir(exist_ok=True)
    path = root / TUNE_DIR / "study.db"
    return Storage(f"sqlite:///{path}", str(path.relative_to(root)))


def _without_password(url: str) -> str:
    """``url`` with any password in its authority replaced by ``***``."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        user, _, host = authority.rpartition("@")
        authority = f"{user.split(':')[0]}:***@{host}" if ":" in user else authority
    return f"{scheme}://{authority}{slash}{path}"


def open_storage(storage: Storage) -> optuna.storages.RDBStorage:
    """The study database, with heartbeats and stale trials queued again (:data:`HEARTBEAT_S`, :data:`GRACE_S`).

    Raises:
        PipelineError: Naming the database when it cannot be opened.
    """
    import optuna
    import sqlalchemy.exc

    engine: dict[str, Any] = {}
    if storage.url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    try:
        with warnings.catch_warnings():  # heartbeats are an experimental feature in Optuna 5.1; they are tested here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                storage.url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=requeue,
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise PipelineError(f"tune storage {storage.description}: cannot open it ({reason})") from None


def study_name(params: Params, raw: dict[str, Any]) -> str:
    """The default study name: the experiment, and a digest of params.yaml with ``tune.trials`` and
    ``tune.timeout_minutes`` left out. Rerunning the same search resumes its study (asking for more trials
    continues it); changing the space or any other param starts a new one."""
    tune = {k: v for k, v in raw.get("tune", {}).items() if k not in ("trials", "timeout_minutes")}
    text = json.dumps({**{k: v for k, v in raw.items() if k != "tune"}, "tune": tune}, sort_keys=True, default=str)
    return f"{params.experiment_name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def sampler(tune: TuneConfig, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler ``tune.sampler``, seeded from params.yaml's ``seed``."""
    import optuna

    from pipeline.tuning.space import grid

    if tune.sampler == "grid":
        return optuna.samplers.GridSampler(grid(tune.space), seed=seed)
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    """Optuna's median pruner with ``tune.pruner_startup_trials`` and ``tune.pruner_warmup_epochs``, or none.

    With ``objective: cv`` a trial reports once per fold, not per epoch: it may be pruned from its second fold on
    (one fold's value alone is the noisy judge cross-validation is there to replace).
    """
    import optuna

    if tune.pruner == "none":
        return optuna.pruners.NopPruner()
    if tune.objective == "cv":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=1)
    return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials,
                                       n_warmup_steps=tune.pruner_warmup_epochs,
                                       interval_steps=tune.pruner_interval_epochs)


def retried_from(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int | None:
    """The number of the killed trial that ``trial`` runs again, or ``None`` for a trial of its own."""
    return trial.user_attrs.get("failed_trial")


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a killed trial again with the same params (the first trial it retries recorded on the retry), at
    most :data:`MAX_RETRIES` times; the retry resumes from the checkpoint the killed one left."""
    import optuna

    original = retried_from(trial)
    original = trial.number if original is None else int(original)
    tries = sum(retried_from(t) == original for t in study.get_trials(deepcopy=False))
    if tries >= MAX_RETRIES:
        return
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions,
                                              user_attrs={"failed_trial": original}))


def stale_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Fail the RUNNING trials of this host whose process is gone, and queue each again with its params.

    Optuna's heartbeat finds them too, but only after :data:`GRACE_S`; a search killed here and rerun at once
    finds its own dead trials by the ``host`` and ``pid`` each trial records.

    Returns:
        The trials failed.
    """
    import optuna

    from pipeline.plumbing import alive

    here, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
        if host != here or pid is None or alive(int(pid), named="pipeline"):
            continue
        if study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(study._storage.get_trial(trial._trial_id))
            requeue(study, failed[-1])
    return failed


def open_study(space: Workspace, name: str | None, storage_url: str | None,
               worker: int = 0) -> tuple[Search, optuna.Study]:
    """The search of ``space``'s params and its study, created or resumed; the study's MLflow run opened.

    The sampler is seeded from ``seed``: a new study with one worker draws the same trials every time. A resumed
    study's sampler, and each further worker's, is seeded past that, so none redraws what the study already holds.

    Raises:
        PipelineError: On a missing or bad ``tune`` section or space, a metric of the other task, or a study
            database that cannot be opened.
    """
    import optuna

    from pipeline import tracking
    from pipeline.config.tune import require_tune, tune_metric
    from pipeline.tuning.objective import Search
    from pipeline.tuning.prepare import workspace_prepared
    from pipeline.tuning.space import base_point, check_space

    params, root = space.params, space.root
    tune = require_tune(params)
    check_space(space.raw, params, space.task)
    metric, direction = tune_metric(tune, params.evaluate.primary_metric, space.task)
    storage = resolve_storage(root, storage_url)
    name = name or study_name(params, space.raw)
    # the search prints its own line per trial (a failed one with its error); Optuna would add a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=open_storage(storage), study_name=name, sampler=sampler(tune, params.seed),
                                pruner=pruner(tune), direction=direction, load_if_exists=True)
    if study.trials or worker:
        # a resumed study, or a second worker: seeded as the first run was, it would draw the same params again
        study.sampler = sampler(tune, (params.seed + len(study.trials) + WORKER_SEED_STRIDE * worker) % 2**32)
    if not study.trials and tune.sampler != "grid":  # a grid enumerates its points itself
        study.enqueue_trial(base_point(tune.space, params), user_attrs={"start": "params.yaml"})
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, params.experiment_name, root)
    parent = study_run(client, study, experiment, storage, tune)
    for trial in stale_trials(study):
        _kill_run(client, trial.user_attrs.get("mlflow_run_id"))
        print(f"tune: trial {trial.number} was left running by a process that is gone: failed, queued again")
    from pipeline.tuning.commands import environment_tags

    search = Search(root, space.raw, params, tune, space.task, metric, direction, name, experiment, parent,
                    workspace_prepared(root), storage.url, environment_tags(root))
    so_far = f"{len(study.trials)} trial{'' if len(study.trials) == 1 else 's'} so far"
    print(f"tune: study {name} in {storage.description}: {so_far}; optimising {metric} "
          f"on {'cross-validation' if tune.objective == 'cv' else 'validation'}; MLflow run {parent}", flush=True)
    return search, study


def study_run(client: Any, study: optuna.Study, experiment: str, storage: Storage, tune: TuneConfig) -> str:
    """The study's MLflow run: created with the study (its id kept on the study), reopened as RUNNING after."""
    # pid and host: `runs cleanup` closes the run when a SIGKILL left it RUNNING
    run_id = study.user_attrs.get("mlflow_run_id")
    tags = {"pid": str(os.getpid()), "host": socket.gethostname()}
    if run_id is None:
        run = client.create_run(experiment, run_name=f"tune {study.study_name}", tags={
            **tags, "tune.study": study.study_name, "tune.storage": storage.description})
        run_id = run.info.run_id
        client.log_param(run_id, "tune", json.dumps(tune.model_dump(mode="json"), sort_keys=True)[:6000])
        study.set_user_attr("mlflow_run_id", run_id)
    else:
        client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    return run_id


def _kill_run(client: Any, run_id: str | None) -> None:
    """Mark a trial's MLflow run KILLED when it was left RUNNING."""
    if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
