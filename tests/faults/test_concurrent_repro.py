"""Two `dvc repro` at once in one workspace: the second stops at once on DVC's locks, the first completes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.faults.helpers import STAGE_OUTS, copy_project, lock_stages, start_repro, wait_until
from tests.project import dvc, stages_run

pytestmark = pytest.mark.slow


def test_a_second_repro_fails_fast_on_the_lock_and_the_first_completes(tmp_path: Path, scaled: Path) -> None:
    project = copy_project(scaled, tmp_path / "p")
    first = start_repro(project)
    try:
        wait_until(first, "the first repro was training", lambda: first.stage("train"))
        began = time.monotonic()
        second = dvc(project, "repro", check=False)
        took = time.monotonic() - began
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
    assert took < 30, f"the second repro took {took:.1f} s to give up"
    assert still_running, "the first repro had already ended: the lock was never contended"
    assert done.returncode == 0, done.stdout + done.stderr
    assert stages_run(done.stdout) == {"train", "evaluate"}
    assert set(lock_stages(project)) == set(STAGE_OUTS)
    assert "Data and pipelines are up to date." in dvc(project, "status").stdout
