"""End to end through the real commands: `python -m pipeline tune` on the penguins table (a real Optuna study in
SQLite, real trainings, a real MLflow store), `tune --apply` through `dvc exp run`, a search killed mid-trial and
rerun, and `python -m pipeline cv`.

The project trains briefly (at most 40 epochs) so ten trials take seconds each; the search space is small.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.project import dvc, env, free_port, make_project, run, set_params, wait_for

pytestmark = pytest.mark.slow

SPACE = {
    "train.lr": {"low": 0.001, "high": 0.1, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.5},
    "model.hidden": {"choices": [[16], [64, 32]]},
}


def tune_section(trials: int, **changes: object) -> dict:
    return {"trials": trials, "timeout_minutes": None, "sampler": "tpe", "pruner": "median", "objective": "val",
            "metric": "auto", "folds": 3, "pruner_startup_trials": 3, "pruner_warmup_epochs": 5,
            "pruner_interval_epochs": 5, "space": SPACE,
            **changes}


def project_with(tmp_path: Path, trials: int, epochs: int = 40, **changes: object) -> Path:
    """The penguins project with a search of ``trials`` trials; ``epochs`` long trainings (patience 10, or all of
    them when ``epochs`` is over 40: the interrupt tests need trials that last seconds)."""
    patience = 10 if epochs <= 40 else epochs
    root = make_project(tmp_path, train__max_epochs=epochs, train__early_stopping__patience=patience)
    set_params(root, tune=tune_section(trials, **changes))
    run(["git", "commit", "-qam", "a search"], root)
    return root


def tune(root: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pipeline", "tune", *args], root, check=check, timeout=timeout)


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def study_runs(root: Path) -> tuple[object, list]:
    """The study's run and its trial runs, in trial order."""
    client = client_for(root)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    parents = [r for r in runs if "tune.study" in r.data.tags and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(children, key=lambda r: int(r.data.tags["tune.trial"]))


def load_study(root: Path) -> optuna.Study:
    names = optuna.get_all_study_names(f"sqlite:///{root / '.tune' / 'study.db'}")
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=f"sqlite:///{root / '.tune' / 'study.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 10-trial study on penguins, then the pipeline itself on params.yaml's defaults."""
    root = project_with(tmp_path_factory.mktemp("tune"), trials=10)
    done = tune(root)
    dvc(root, "repro")
    return {"root": root, "out": done.stdout, "err": done.stderr}


def test_ten_trials_are_ten_child_runs_of_one_study_run(searched: dict) -> None:
    parent, children = study_runs(searched["root"])
    assert parent.info.status == "FINISHED"
    assert [int(r.data.tags["tune.trial"]) for r in children] == list(range(10))
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags
        assert child.data.tags["tune.state"] in ("complete", "pruned")
        assert child.data.tags["tune.study"] == parent.data.tags["tune.study"]
        assert float(child.data.params["train.lr"]) == pytest.approx(float(child.data.params["tune.train.lr"]))
        assert "val/loss" in child.data.metrics  # the per-epoch curve
    complete = [c for c in children if c.data.tags["tune.state"] == "complete"]
    assert complete and all("val/accuracy" in c.data.metrics and "objective" in c.data.metrics for c in complete)
    artifacts = {a.path for a in client_for(searched["root"]).list_artifacts(parent.info.run_id, "plots")}
    assert artifacts == {"plots/history.png", "plots/importances.png", "plots/slices.png"}
    assert int(parent.data.tags["tune.best_trial"]) in {int(c.data.tags["tune.trial"]) for c in complete}
    lines = [line for line in searched["out"].splitlines() if line.startswith("tune: trial ")]
    assert len(lines) == 10 and "ETA" in lines[0] and "0 left" in lines[-1], searched["out"]


def test_the_first_trial_is_params_yaml_and_scores_what_the_pipeline_reports(searched: dict) -> None:
    _, children = study_runs(searched["root"])
    first = children[0]
    assert first.data.tags["tune.state"] == "complete"
    assert first.data.params["model.hidden"] == "[64, 32]" and float(first.data.params["train.lr"]) == 0.01
    reported = json.loads((searched["root"] / "reports" / "metrics.json").read_text())["val"]
    # the same params, data and code train bit-identical weights, so validation is the same to the last digit
    assert first.data.metrics["val/log_loss"] == reported["log_loss"]
    assert first.data.metrics["val/accuracy"] == reported["accuracy"]


def test_the_best_trial_is_no_worse_than_the_defaults_and_is_printed_as_a_dvc_command(searched: dict) -> None:
    study = load_study(searched["root"])
    assert study.best_value >= study.trials[0].value
    out = searched["out"]
    assert f"best trial {study.best_trial.number}: accuracy {study.best_value:.4f} on validation" in out
    command = next(line for line in out.splitlines() if "adopt it through the pipeline:" in line)
    assert "dvc exp run -S train.lr=" in command and "-S 'model.hidden=[" in command


def test_a_seeded_rerun_gives_the_same_trials_and_best(searched: dict) -> None:
    tune(searched["root"], "--study", "again")
    storage = f"sqlite:///{searched['root'] / '.tune' / 'study.db'}"
    first = load_study_named(storage, exclude="again")
    again = optuna.load_study(study_name="again", storage=storage)
    assert [t.params for t in again.trials] == [t.params for t in first.trials]
    assert [t.value for t in again.trials] == [t.value for t in first.trials]
    assert again.best_trial.number == first.best_trial.number


def load_study_named(storage: str, exclude: str) -> optuna.Study:
    name = next(n for n in optuna.get_all_study_names(storage) if n != exclude)
    return optuna.load_study(study_name=name, storage=storage)


def test_apply_registers_a_version_tagged_with_the_study_and_trial(searched: dict) -> None:
    root = searched["root"]
    done = tune(root, "--apply")
    assert "trials so far" in done.stdout and "tune: trial " not in done.stdout  # complete: nothing more to run
    study = load_study(root) if False else load_study_named(f"sqlite:///{root / '.tune' / 'study.db'}", "again")
    client = client_for(root)
    versions = sorted(client.search_model_versions("name = 'penguins-fnn'"), key=lambda v: int(v.version))
    latest = client.get_model_version("penguins-fnn", versions[-1].version)
    assert latest.tags["tune.study"] == study.study_name
    assert latest.tags["tune.trial"] == str(study.best_trial.number)
    shown = run([sys.executable, "-m", "pipeline", "models", "show", latest.version], root).stdout
    assert f"tune.study" in shown and study.study_name in shown
    best = {k: v for k, v in study.best_trial.params.items()}
    train_run = client.get_run(latest.run_id)
    assert float(train_run.data.params["train.lr"]) == pytest.approx(best["train.lr"])


def test_a_search_killed_mid_trial_resumes_without_losing_or_repeating_a_trial(tmp_path: Path) -> None:
    root = project_with(tmp_path, trials=5, epochs=400, pruner="none")
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=root, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{root / '.tune' / 'study.db'}"

    def second_trial_training() -> bool:
        assert process.poll() is None, "the search ended before its second trial was seen training"
        if not (root / ".tune" / "study.db").is_file() or not optuna.get_all_study_names(storage):
            return False
        study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.number >= 1]
        return bool(running) and "mlflow_run_id" in running[0].user_attrs

    try:
        wait_for(second_trial_training, "the search's second trial to start", timeout=600, poll=0.2)
        time.sleep(1.0)  # into its training
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = tune(root)
    assert "left running by a process that is gone: failed, queued again" in done.stdout
    study = load_study(root)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    killed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(finished) == 5 and len(killed) == 1, [(t.number, t.state) for t in study.trials]
    retry = [t for t in finished if t.user_attrs.get("failed_trial") == killed[0].number]
    assert len(retry) == 1 and retry[0].params == killed[0].params  # run again, not lost
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 5  # none repeated
    client = client_for(root)
    assert client.get_run(killed[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    _, children = study_runs(root)
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)


def test_cv_reports_the_mean_of_its_fold_runs(tmp_path: Path) -> None:
    root = project_with(tmp_path, trials=1)
    done = run([sys.executable, "-m", "pipeline", "cv", "--folds", "3"], root, timeout=900)
    client = client_for(root)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    runs = client.search_runs([experiment])
    parent = next(r for r in runs if r.data.tags.get("cv.folds") == "3" and "mlflow.parentRunId" not in r.data.tags)
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(folds) == 3
    accuracies = [f.data.metrics["val/accuracy"] for f in folds]
    assert parent.data.metrics["cv/val/accuracy/mean"] == pytest.approx(sum(accuracies) / 3, abs=1e-12)
    mean = parent.data.metrics["cv/val/accuracy/mean"]
    std = parent.data.metrics["cv/val/accuracy/std"]
    assert f"cv: val/accuracy {'':<10} {mean:.4f} +- {std:.4f}".replace(" " * 11, " " * 10) in done.stdout or \
        f"{mean:.4f} +- {std:.4f}" in done.stdout
    assert sorted(int(f.data.tags["cv.fold"]) for f in folds) == [0, 1, 2]
    assert not (root / "reports").exists()  # the test split and evaluate are not touched


def test_two_workers_on_the_team_servers_postgresql_record_every_trial_once(tmp_path: Path) -> None:
    """`tune --jobs 2` with `server start` running in the workspace: the study lives in its PostgreSQL."""
    from tests.serving.test_server_e2e import kill_leftovers, server_cli, server_folder

    with server_folder() as folder:  # a folder PostgreSQL's user can reach (pytest's temp root is 0700 as root)
        root = project_with(folder.parent / "project", trials=6, pruner="none")
        server = root / ".server"
        groups: set[int] = set()
        try:
            server_cli("start", server, "--port", free_port(), "--pg-port", free_port())
            groups.add(json.loads((server / "state.json").read_text())["mlflow_pgid"])
            done = tune(root, "--jobs", "2")
            state = json.loads((server / "state.json").read_text())
            storage = f"postgresql+psycopg2://mlflow@127.0.0.1:{state['pg_port']}/optuna"
            os.environ["PGPASSFILE"] = str(server / "pgpass")
            try:
                study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
                trials, parent_id = study.get_trials(), study.user_attrs["mlflow_run_id"]
            finally:
                del os.environ["PGPASSFILE"]
            _, children = study_runs(root)
            assert not (root / ".tune" / "study.db").exists()
        finally:
            try:
                server_cli("stop", server, check=False)
            finally:
                kill_leftovers(server, groups)
    assert "the team server's PostgreSQL" in done.stdout
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes took trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)  # no trial drawn twice
    assert sorted(int(c.data.tags["tune.trial"]) for c in children) == [t.number for t in trials]  # each run once
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}


@pytest.mark.parametrize(("space", "expected"), [
    ({"train.lrr": {"low": 0.001, "high": 0.1}}, "tune.space.train.lrr: unknown key"),
    ({"model.cnn.channels": {"choices": [[8], [16]]}}, "tune.space.model.cnn.channels"),
    ({"split.val": {"low": 0.1, "high": 0.3}}, "tune.space.split.val"),
], ids=["unknown key", "a key the fnn ignores", "a key no trial may vary"])
def test_a_bad_space_stops_before_any_trial_with_one_line_naming_the_key(tmp_path: Path, space: dict,
                                                                         expected: str) -> None:
    from tests.asserts import assert_one_error

    root = project_with(tmp_path, trials=3, space=space)
    done = tune(root, check=False)
    line = assert_one_error(done, "pipeline")
    assert expected in line, line
    names = optuna.get_all_study_names(f"sqlite:///{root / '.tune' / 'study.db'}") \
        if (root / ".tune" / "study.db").exists() else []
    assert names == []  # no study was opened
    if (root / "mlflow.db").exists():
        client = client_for(root)
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


def test_tune_without_a_tune_section_says_so_before_any_work(tmp_path: Path) -> None:
    import yaml

    from tests.asserts import assert_one_error

    root = make_project(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["tune"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["tune"], ["cv"]):
        done = run([sys.executable, "-m", "pipeline", *command], root, check=False)
        line = assert_one_error(done, "pipeline", alone=True)
        assert line.startswith("pipeline: error: params.yaml: tune: missing section"), line
    assert not (root / "data").exists()  # not even the data stages ran


def test_objective_cv_scores_each_trial_by_its_folds_mean(tmp_path: Path) -> None:
    root = project_with(tmp_path, trials=3, objective="cv", pruner="none")
    tune(root)
    _, trials = study_runs(root)
    client = client_for(root)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    study = load_study(root)
    assert len(trials) == 3
    for trial_run, trial in zip(trials, study.trials, strict=True):
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial_run.info.run_id]
        assert sorted(int(f.data.tags["cv.fold"]) for f in folds) == [0, 1, 2]
        mean = sum(f.data.metrics["val/accuracy"] for f in folds) / 3
        assert trial.value == pytest.approx(mean, abs=1e-12)
        assert trial_run.data.metrics["cv/val/accuracy/mean"] == pytest.approx(mean, abs=1e-12)


def test_ctrl_c_ends_the_study_and_trial_runs_killed_and_queues_the_trial_again(tmp_path: Path) -> None:
    root = project_with(tmp_path, trials=4, epochs=400, pruner="none")
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=root, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    storage = f"sqlite:///{root / '.tune' / 'study.db'}"

    def a_trial_training() -> bool:
        assert process.poll() is None, f"the search ended before a trial was seen training: {process.stderr.read()}"
        if not (root / ".tune" / "study.db").is_file() or not optuna.get_all_study_names(storage):
            return False
        study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        return any(t.state == optuna.trial.TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                   for t in study.trials)

    try:
        wait_for(a_trial_training, "a trial to start", timeout=600, poll=0.2)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0 and "Traceback" not in err, err
    study = load_study(root)
    interrupted = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(interrupted) == 1, [(t.number, t.state) for t in study.trials]
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert [t.user_attrs.get("failed_trial") for t in waiting] == [interrupted[0].number]
    parent, children = study_runs(root)
    assert parent.info.status == "KILLED"
    assert {c.info.status for c in children if c.data.tags["tune.trial"] == str(interrupted[0].number)} == {"KILLED"}
    assert all(c.info.status != "RUNNING" for c in children)
