"""The study database: where it is, how a URL is checked and shown, the default study name, and the trials a
dead worker left RUNNING (real SQLite studies, real processes)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from pipeline.errors import PipelineError
from pipeline.tuning import study as study_module
from pipeline.tuning.study import Storage, open_storage, resolve_storage, stale_trials, study_name


def test_the_default_storage_is_a_sqlite_file_in_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(study_module.STORAGE_ENV, raising=False)
    storage = resolve_storage(tmp_path, None)
    assert storage.url == f"sqlite:///{tmp_path / '.tune' / 'study.db'}"
    assert storage.description == ".tune/study.db"


def test_storage_comes_from_the_option_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(study_module.STORAGE_ENV, "postgresql+psycopg2://alice:s3cret@db.example:5432/optuna")
    from_env = resolve_storage(tmp_path, None)
    assert from_env.url.endswith("@db.example:5432/optuna")
    assert "s3cret" not in from_env.description and "alice:***@db.example" in from_env.description
    assert resolve_storage(tmp_path, "sqlite:///elsewhere.db").url == "sqlite:///elsewhere.db"


def test_a_storage_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"--storage = 'study\.db': expected a database URL"):
        resolve_storage(tmp_path, "study.db")


def test_an_unreachable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"tune storage .*missing/study\.db: cannot open it"):
        open_storage(Storage(f"sqlite:///{tmp_path}/missing/study.db", f"{tmp_path}/missing/study.db"))


def test_the_study_name_ignores_how_long_the_search_runs() -> None:
    from tests.factories import build_params, params_doc

    raw = {**params_doc(), "tune": {"trials": 10, "timeout_minutes": None, "sampler": "tpe"}}
    params = build_params()
    name = study_name(params, raw)
    assert name.startswith(f"{params.experiment_name}-")
    assert study_name(params, {**raw, "tune": {**raw["tune"], "trials": 50, "timeout_minutes": 5}}) == name
    assert study_name(params, {**raw, "tune": {**raw["tune"], "sampler": "random"}}) != name
    assert study_name(params, {**raw, "seed": 7}) != name


def _study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(Storage(f"sqlite:///{tmp_path / 'study.db'}", "study.db"))
    return optuna.create_study(storage=storage, study_name="s", direction="maximize")


def _running_trial(study: optuna.Study, pid: int, host: str) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("train.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("pid", pid)
    trial.set_user_attr("host", host)
    return trial


def test_a_trial_whose_process_is_gone_is_failed_and_queued_again_with_its_params(tmp_path: Path) -> None:
    study = _study(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass", "pipeline"])
    gone.wait()
    dead = _running_trial(study, gone.pid, socket.gethostname())
    keeps = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pipeline"])
    try:
        alive = _running_trial(study, keeps.pid, socket.gethostname())
        elsewhere = _running_trial(study, gone.pid, "another-host")  # its heartbeat, not this host, decides
        failed = stale_trials(study)
        states = {t.number: t.state for t in study.get_trials()}
    finally:
        keeps.kill()
        keeps.wait()
    assert [t.number for t in failed] == [dead.number]
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert states[alive.number] == states[elsewhere.number] == optuna.trial.TrialState.RUNNING
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].params == study.trials[dead.number].params
    assert waiting[0].user_attrs["failed_trial"] == dead.number
