"""Two `dvc repro` at once in one workspace: the second stops at once on DVC's locks, the first completes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults.helpers import STAGE_OUTS, WAIT_S, copy_project, lock_stages, start_repro, wait_until
from tests.project import dvc, stages_run

pytestmark = pytest.mark.slow


def test_a_second_repro_fails_fast_on_the_lock_and_the_first_completes(tmp_path: Path, scaled: Path) -> None:
    project = copy_project(scaled, tmp_path / "p")
    first = start_repro(project)
    try:
        trainer = wait_until(first, "the first repro was training", lambda: first.stage("train"))
        # the deadline is a hang guard: a second repro that queued behind the first would run into it
        second = dvc(project, "repro", check=False, timeout=WAIT_S)
        # the order of events is the claim: the second gave up while the first's train was still the same
        # process, mid-training, so it neither waited for that stage nor for the whole repro
        still_training = trainer.is_running() and first.stage("train") == trainer
        still_running = first.process.poll() is None
        done = first.wait()
    finally:
        first.kill_group()

    assert second.returncode != 0
    # DVC holds its repo lock while it works between stages and releases it while a stage's command runs, when
    # the first repro's read/write locks on the stage files (.dvc/tmp/rwlock) stop the second instead
    busy = re.search(rf"is busy, it is being blocked by:\s+\(PID {first.process.pid}\): ", second.stderr)
    assert busy or "Unable to acquire lock. Most likely another DVC process is running" in second.stderr, second.stderr
    assert stages_run(second.stdout) == set(), second.stdout
    assert still_running, "the first repro had already ended: the lock was never contended"
    assert still_training, "the first repro's train had ended before the second gave up: it waited on the lock"
    assert done.returncode == 0, done.stdout + done.stderr
    assert stages_run(done.stdout) == {"train", "evaluate"}
    assert set(lock_stages(project)) == set(STAGE_OUTS)
    assert "Data and pipelines are up to date." in dvc(project, "status").stdout
