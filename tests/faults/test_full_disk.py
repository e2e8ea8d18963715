"""A full disk while a stage writes: a real ENOSPC from a small tmpfs mounted over `data/` (clean's output) or
`models/` (train's checkpoints and model bundle), the README's "a full disk" row.

Mounting needs root (CAP_SYS_ADMIN). Without it the tests skip on a workstation, saying why, and fail under
``CI=true``: the README's claim is never left unchecked in CI without a word. (No unprivileged substitute gives
the same error: RLIMIT_FSIZE gives EFBIG, "File too large", to Python, which ignores SIGXFSZ, not the README's
"No space left on device"; and /dev/full cannot stand in for a temporary file the stage names itself.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.asserts import assert_one_error
from tests.faults.helpers import copy_project, lock_stages, runs, temp_leftovers, write_table
from tests.project import dvc, make_project, require, set_params

pytestmark = pytest.mark.slow

MARGIN = 64 * 1024  # free bytes left on the disk: clean's train.parquet needs several times that


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture
def nearly_full(tmp_path: Path) -> Iterator[Path]:
    """A project run up to split whose `data/` is a tmpfs holding raw and split with MARGIN bytes to spare."""
    project = make_project(tmp_path / "p", data__source="inputs/table.csv", data__target="label")
    write_table(project / "inputs" / "table.csv", unique=20_000, missing=0.01)
    dvc(project, "repro", "split")
    data, kept = project / "data", tmp_path / "data-before"
    shutil.move(data, kept)
    data.mkdir()
    mounted = _mount(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(data)])
    if mounted.returncode != 0:
        shutil.rmtree(data)
        shutil.move(kept, data)
    require(mounted.returncode == 0, f"a tmpfs cannot be mounted here (needs root and CAP_SYS_ADMIN): "
                                     f"{mounted.stderr.strip()}")
    try:
        shutil.copytree(kept, data, dirs_exist_ok=True)
        stats = os.statvfs(data)
        used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        resized = _mount(["mount", "-o", f"remount,size={used + MARGIN}", str(data)])
        assert resized.returncode == 0, resized.stderr
        yield project
    finally:
        done = _mount(["umount", str(data)])
        if done.returncode != 0:
            _mount(["umount", "-l", str(data)])


def test_a_full_disk_while_clean_writes_is_one_line_naming_the_file(nearly_full: Path) -> None:
    project = nearly_full
    stats = os.statvfs(project / "data")
    assert stats.f_bavail * stats.f_frsize <= 2 * 64 * 1024  # the disk really is nearly full
    before = lock_stages(project)

    done = dvc(project, "repro", check=False)
    assert done.returncode != 0
    line = assert_one_error(done, "clean")
    assert line.startswith("clean: error: data/clean/train.parquet: could not write it (No space left on device)"), line
    assert not (project / "data" / "clean").exists()
    assert temp_leftovers(project) == []  # the partial file and its folder are gone, the space is free again
    assert lock_stages(project) == before and "clean" not in before


@contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """An empty tmpfs of ``size`` mounted on ``folder`` (where mounting is not allowed: see the module's doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = _mount(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    require(mounted.returncode == 0, f"a tmpfs cannot be mounted here (needs root and CAP_SYS_ADMIN): "
                                     f"{mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if _mount(["umount", str(folder)]).returncode != 0:
            _mount(["umount", "-l", str(folder)])


# a network whose weights (~1 MB) are far larger than the 64 KiB models/ has room for
WIDE = {"model__hidden": [512, 512], "train__max_epochs": 2, "train__early_stopping__patience": 2}


@pytest.mark.parametrize(("every", "file"), [(0, "models/model/weights.safetensors"),
                                             (1, "models/checkpoints/last.ckpt")],
                         ids=["bundle", "checkpoint"])
def test_a_full_disk_while_train_writes_is_one_line_naming_the_file(tmp_path: Path, scaled: Path, every: int,
                                                                    file: str) -> None:
    project = copy_project(scaled, tmp_path / "p")
    set_params(project, train__checkpoint_every=every, **WIDE)
    before = lock_stages(project)
    with _tmpfs(project / "models", "64k"):
        done = dvc(project, "repro", "train", check=False)
        assert done.returncode != 0
        line = assert_one_error(done, "train")
        assert line == f"train: error: {file}: could not write it (No space left on device)", line
        assert not (project / "models" / "model").exists()
        assert not (project / "models" / "train.json").exists()
        assert temp_leftovers(project) == []  # the partial weights are gone, the space is free again
        assert lock_stages(project) == before and "train" not in before
        (tracked,) = runs(project)
        assert tracked.info.status == "FAILED"
