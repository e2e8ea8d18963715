"""An exception, SIGTERM and SIGKILL in the middle of ingest, clean and train, under a real `dvc repro`.

Each fault is real: the exception comes from bad data the stage detects or a file it reads corrupted while it
runs, and the signals go to the stage's own Python process (not to dvc, which then reports the failure). After
the fault: dvc exits non-zero, `dvc.lock` keeps the stage's previous entry (or none), no output is left
half-written where the next stage reads, the MLflow run of train is FAILED or KILLED, and the next `dvc repro`
completes, training resuming from its checkpoint.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.asserts import assert_one_error
from tests.faults.helpers import (
    EPOCHS, STAGE_OUTS, Repro, copy_project, epoch_saved, link_input, lock_stages, runs, snapshot,
    start_repro, temp_leftovers, wait_until, write_table,
)
from tests.project import dvc, make_project, run, set_params, stages_run

pytestmark = pytest.mark.slow

FAULTS = ["exception", "sigterm", "sigkill"]
# downstream stages kept quick, so a case's rerun of the whole pipeline stays short
QUICK = {"data__source": "inputs/big.csv", "data__target": "label", "data__duplicates": "drop", "model__hidden": [16],
         "train__max_epochs": 3, "train__batch_size": 512, "evaluate__baselines": ["dummy"]}
INFINITE = "1.0,inf,0.5,0.5,0.5,0.5,a,yes\n"  # x1 = inf: ingest refuses it once it has read the whole file
FIXED = "1.0,2.0,0.5,0.5,0.5,0.5,a,yes\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated once: ingest's input (3 million rows, 20 000 distinct: slow to read, small after dedup) with a
    bad and a fixed last row, and clean's (200 000 rows with gaps that knn fills slowly, 4 of a rare class)."""
    folder = tmp_path_factory.mktemp("inputs")
    big = write_table(folder / "big.csv", unique=20_000, copies=150)
    files = {"ingest": big, "clean": write_table(folder / "gaps.csv", unique=200_000, missing=0.008, rare=4)}
    for name, row in (("ingest-bad", INFINITE), ("ingest-fixed", FIXED)):
        files[name] = folder / f"{name}.csv"
        with open(big, "rb") as source, open(files[name], "wb") as target:
            target.write(source.read())
            target.write(row.encode())
    return files


def _reading(repro: Repro, source: Path) -> psutil.Process | None:
    """The ingest process once it is reading its input (the file is open, or it has read that many bytes)."""
    process = repro.stage("ingest")
    if process is None:
        return None
    try:
        if any(Path(f.path) == source.resolve() for f in process.open_files()):
            return process
        return process if process.io_counters().read_chars >= source.stat().st_size else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _writing(repro: Repro, project: Path, stage: str, out: str) -> psutil.Process | None:
    """The stage process once its output folder exists under its temporary name (it is writing it)."""
    process = repro.stage(stage)
    if process is None or not list(project.glob(f"{Path(out).parent}/.{Path(out).name}.tmp-*")):
        return None
    return process


def _corrupt(path: Path) -> None:
    """Replace ``path`` with its first half (a new file: DVC's cache may share the old one's data)."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _check_after_fault(project: Path, stage: str, fault: str, done, lock_before: dict, outs_before: dict) -> None:
    """What every fault must leave: a failed repro, the lock entry as it was, no half-written output."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"failed to reproduce '{stage}'" in output, output
    lock = lock_stages(project)
    assert lock.get(stage) == lock_before.get(stage), f"dvc.lock entry of {stage} changed"
    assert lock == lock_before, "dvc.lock changed for some stage"
    for rel, files in snapshot(project, STAGE_OUTS[stage]).items():
        # DVC removes a stage's outputs before running it: absent, or exactly what was there before
        assert files is None or files == outs_before[rel], f"{rel} was left changed by the failed {stage}"
    leftovers = temp_leftovers(project)
    if fault == "sigkill":  # no chance to clean up: the stage's own temporary names may remain (the next run
        # sweeps them), never a final name
        own = tuple(f"{Path(out).parent}/.{Path(out).name}.tmp-" for out in STAGE_OUTS[stage])
        own += ("models/checkpoints/.",) if stage == "train" else ()  # a checkpoint save cut short
        assert all(p.startswith(own) for p in leftovers), leftovers
    else:
        assert leftovers == [], f"temporary files left behind: {leftovers}"
    if fault == "sigterm":  # one line saying so, not the traceback of whatever the stage was doing
        assert f"{stage}: terminated (SIGTERM)" in done.stderr, done.stderr
        assert "Traceback" not in output, output


def _check_recovered(project: Path, stage: str) -> str:
    done = dvc(project, "repro")
    assert stage in stages_run(done.stdout) or f"Stage '{stage}' is cached" in done.stdout, done.stdout
    assert set(lock_stages(project)) == set(STAGE_OUTS), lock_stages(project)
    assert temp_leftovers(project) == []
    assert "Data and pipelines are up to date." in dvc(project, "status").stdout
    assert all(r.info.status != "RUNNING" for r in runs(project))
    return done.stdout


def _send(process: psutil.Process, fault: str) -> None:
    try:
        process.send_signal(signal.SIGTERM if fault == "sigterm" else signal.SIGKILL)
    except psutil.NoSuchProcess:
        raise AssertionError(f"the stage ended before the {fault} reached it: caught too late to be mid-work") from None


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_during_ingest(tmp_path: Path, inputs: dict[str, Path], fault: str) -> None:
    project = make_project(tmp_path / "p", **QUICK)
    link_input(inputs["ingest"], project)
    dvc(project, "repro", "ingest")
    lock_before, outs_before = lock_stages(project), snapshot(project, STAGE_OUTS["ingest"])
    source = link_input(inputs["ingest-bad" if fault == "exception" else "ingest-fixed"], project)

    repro = start_repro(project)
    try:
        if fault != "exception":
            _send(wait_until(repro, "ingest was reading its input", lambda: _reading(repro, source)), fault)
        done = repro.wait()
    finally:
        repro.kill_group()
    _check_after_fault(project, "ingest", fault, done, lock_before, outs_before)
    if fault == "exception":
        line = assert_one_error(done, "ingest")
        assert "inputs/big.csv: column(s) ['x1'] hold +/-inf; expected finite numbers" in line, line
        link_input(inputs["ingest-fixed"], project)  # the user fixes the row
    assert runs(project) == []  # only train opens an MLflow run
    _check_recovered(project, "ingest")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_during_clean(tmp_path: Path, inputs: dict[str, Path], fault: str) -> None:
    project = make_project(tmp_path / "p", **QUICK)
    link_input(inputs["clean"], project)
    dvc(project, "repro", "clean")  # median: quick; the knn rerun below is the slow one
    lock_before, outs_before = lock_stages(project), snapshot(project, STAGE_OUTS["clean"])
    # knn on the rows with gaps takes seconds; with smote the rare class (2 train rows) is refused after it
    set_params(project, clean__numeric="knn", **({"clean__imbalance": "smote"} if fault == "exception" else {}))

    repro = start_repro(project)
    try:
        if fault != "exception":
            process = wait_until(repro, "clean was writing data/clean",
                                 lambda: _writing(repro, project, "clean", "data/clean"))
            _send(process, fault)
        done = repro.wait()
    finally:
        repro.kill_group()
    _check_after_fault(project, "clean", fault, done, lock_before, outs_before)
    if fault == "exception":
        line = assert_one_error(done, "clean")
        assert "clean.smote_neighbors = 5: class 'rare' has 2 train rows, expected more than 5" in line, line
        set_params(project, clean__imbalance="upsample")  # one of the message's two remedies
    assert runs(project) == []
    _check_recovered(project, "clean")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_during_train(tmp_path: Path, scaled: Path, fault: str) -> None:
    project = copy_project(scaled, tmp_path / "p")
    lock_before, outs_before = lock_stages(project), snapshot(project, STAGE_OUTS["train"])
    last = project / "models" / "checkpoints" / "last.ckpt"

    repro = start_repro(project)
    try:
        process = wait_until(repro, "train saved its epoch 2 checkpoint",
                             lambda: epoch_saved(last) >= 2 and repro.stage("train"))
        if fault == "exception":
            _corrupt(project / "data" / "clean" / "imputer.json")  # train copies it into the model at the end
        else:
            _send(process, fault)
        done = repro.wait()
    finally:
        repro.kill_group()
    _check_after_fault(project, "train", fault, done, lock_before, outs_before)
    saved = epoch_saved(last)
    (tracked,) = runs(project)
    if fault == "exception":
        line = assert_one_error(done, "train")
        assert "data/clean/imputer.json: expected valid JSON, got a corrupt file" in line, line
        assert tracked.info.status == "FAILED"
    elif fault == "sigterm":
        assert tracked.info.status == "KILLED"
    else:
        assert tracked.info.status == "RUNNING"  # nothing could close it; the cleanup command does
        cleaned = run(["python", "-m", "pipeline", "runs", "cleanup"], project)
        assert f"runs: {tracked.info.run_id} marked KILLED: process {process.pid} is gone" in cleaned.stdout
        (tracked,) = runs(project)
        assert tracked.info.status == "KILLED"
    assert 2 <= saved < EPOCHS - 1 or fault == "exception", saved

    stdout = _check_recovered(project, "train")
    if fault != "exception":
        assert f"train: resuming from models/checkpoints/last.ckpt: {saved + 1} of {EPOCHS} epochs done" in stdout
    statuses = sorted(r.info.status for r in runs(project))
    assert statuses == sorted(["FINISHED", "FAILED" if fault == "exception" else "KILLED"]), statuses
    assert os.path.isfile(project / "models" / "model" / "weights.safetensors")
