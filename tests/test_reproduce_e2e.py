"""`python -m pipeline models reproduce`: a registered version rebuilt from its commit, diff and params gives
bit-identical weights (real git, DVC and MLflow; CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.asserts import assert_one_error
from tests.project import dvc, make_project, run, set_params

pytestmark = pytest.mark.slow


def _cli(project: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "pipeline", *args], project, check=check)


def test_clean_and_dirty_versions_rebuild_to_identical_weights(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", train__max_epochs=20, train__early_stopping__patience=5)
    dvc(project, "repro")
    # version 2 comes from an uncommitted change: the run carries the diff, and the rebuild applies it
    set_params(project, train__lr=0.02, train__max_epochs=20, train__early_stopping__patience=5)
    dvc(project, "repro")
    shown = _cli(project, "models", "show", "2").stdout
    assert "git.dirty                          True" in shown and "train.lr                           0.02" in shown

    for version in ("1", "2"):
        done = _cli(project, "models", "reproduce", version, "--keep", str(tmp_path / f"rebuild{version}"))
        assert f"reproduce: penguins-fnn version {version}: weights bit-identical (md5 " in done.stdout
        assert "data differs" not in done.stdout
    rebuilt = (tmp_path / "rebuild2" / "project" / "params.yaml").read_text()
    assert "lr: 0.02" in rebuilt
    # the rebuild used its own store: the user's registry still holds two versions
    listing = _cli(project, "models", "list").stdout.strip().splitlines()
    assert len(listing) == 3


def test_a_version_whose_commit_is_gone_is_refused_by_name(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", train__max_epochs=3)
    dvc(project, "repro")
    other = make_project(tmp_path / "other")  # another repository: the recorded commit is not in it
    import shutil

    shutil.copy(project / "mlflow.db", other / "mlflow.db")
    done = _cli(other, "models", "reproduce", "1", check=False)
    assert done.returncode == 1
    line = assert_one_error(done, "pipeline", alone=True)
    assert "is not in" in line and line.startswith("pipeline: error: commit "), line


def test_rebuilt_weights_that_differ_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", train__max_epochs=3, evaluate__baselines=["dummy"])
    dvc(project, "repro")
    # the registered version's weights in the store no longer match what its commit and params train
    (logged,) = [p for p in (project / "mlruns").rglob("weights.safetensors") if "artifacts" in p.parts]
    logged.write_bytes(logged.read_bytes() + b" ")
    done = _cli(project, "models", "reproduce", "1", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bit-identical" not in done.stdout
    line = assert_one_error(done, "pipeline", alone=True)
    assert line.startswith("pipeline: error: model 'penguins-fnn' version 1: rebuilt weights differ (recorded md5 ")
