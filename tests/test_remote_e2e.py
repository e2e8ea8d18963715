"""End to end: `dvc push` to a remote, `git clone` elsewhere, `dvc pull`, and get every output back without recomputing.

The project's default remote (`storage`, a per-user folder) is never written to here: each project points it at a
folder inside the test's tmp dir with `dvc remote modify --local`, exactly as a user overrides it for one checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.project import ROOT, dvc, make_project, run, stages_run

pytestmark = pytest.mark.slow
REMOTE = "storage"
DEFAULT_URL = "~/.local/share/pipeline/dvc-storage"  # as written in .dvc/config
OUTPUT_DIRS = ("data", "models", "reports")
SCRATCH = "models/checkpoints"  # train's resume state: deliberately outside DVC (see README, Layout)
UP_TO_DATE = "Data and pipelines are up to date"


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under data/, models/ and reports/ (bar train's resume scratch), by path relative to ``root``."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for top in OUTPUT_DIRS if (root / top).exists()
        for path in sorted((root / top).rglob("*"))
        if path.is_file() and not path.relative_to(root).as_posix().startswith(SCRATCH + "/")
    }


def remote_objects(remote: Path) -> set[str]:
    """The objects in a DVC 3 local remote, as hashes (``<md5>`` or ``<md5>.dir``)."""
    store = remote / "files" / "md5"
    return {p.parent.name + p.name for p in store.rglob("*") if p.is_file()} if store.exists() else set()


def locked_objects(project: Path) -> tuple[set[str], set[str]]:
    """Every object hash that dvc.lock's outputs need, and every file path they cover (directories expanded)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    hashes: set[str] = set()
    paths: set[str] = set()
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            md5 = out["md5"]
            hashes.add(md5)
            if md5.endswith(".dir"):
                manifest = project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
                for entry in json.loads(manifest.read_text()):
                    hashes.add(entry["md5"])
                    paths.add(f"{out['path']}/{entry['relpath']}")
            else:
                paths.add(out["path"])
    return hashes, paths


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # every command below runs with a fresh, empty HOME: the default storage folder it would resolve to cannot
    # exist beforehand, so its absence afterwards proves nothing wrote there (the user's own is never at stake)
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        return _flow(tmp_path_factory, home)


def _flow(tmp_path_factory: pytest.TempPathFactory, home: Path) -> dict:
    default_store = Path(os.path.expanduser(DEFAULT_URL))
    assert default_store.is_relative_to(home) and not default_store.exists(), default_store
    remote = tmp_path_factory.mktemp("remote")
    original = make_project(tmp_path_factory.mktemp("original"), train__max_epochs=15,
                            train__early_stopping__patience=5)
    dvc(original, "remote", "modify", "--local", REMOTE, "url", str(remote))
    first = dvc(original, "repro")
    assert stages_run(first.stdout) == {"ingest", "split", "clean", "scale", "train", "evaluate"}, first.stdout
    assert remote_objects(remote) == set(), "repro must not push anything by itself"
    run(["git", "add", "-A"], original)
    run(["git", "commit", "-qm", "dvc.lock"], original)
    assert run(["git", "status", "--porcelain"], original).stdout == ""
    pushed = dvc(original, "push")
    cloud = dvc(original, "status", "--cloud").stdout

    clone = tmp_path_factory.mktemp("elsewhere") / "clone"
    run(["git", "clone", "-q", str(original), str(clone)], tmp_path_factory.getbasetemp())
    dvc(clone, "remote", "modify", "--local", REMOTE, "url", str(remote))
    before_pull = {"files": files_under(clone), "status": dvc(clone, "status").stdout}
    pulled = dvc(clone, "pull")
    return {
        "original": original, "clone": clone, "remote": remote, "pushed": pushed.stdout, "cloud": cloud,
        "before_pull": before_pull, "pulled": pulled.stdout, "status": dvc(clone, "status").stdout,
        "repro": dvc(clone, "repro").stdout, "default_store": default_store, "home": home,
        "default_remote": dvc(clone, "remote", "default", "--project").stdout.strip(),
    }


def test_push_sends_exactly_the_locked_outputs(flow: dict) -> None:
    assert f"Cache and remote '{REMOTE}' are in sync" in flow["cloud"], flow["cloud"]
    hashes, paths = locked_objects(flow["original"])
    assert remote_objects(flow["remote"]) == hashes  # nothing missing, nothing else (no MLflow store)
    assert paths == set(files_under(flow["original"]))  # every output file is a DVC output, bar the resume scratch


def test_mlflow_store_is_neither_pushed_nor_cloned(flow: dict) -> None:
    original, clone = flow["original"], flow["clone"]
    assert (original / "mlflow.db").is_file()  # the run was tracked, so there was a store to leave behind
    _, paths = locked_objects(original)
    assert not [p for p in paths if p.startswith(("mlflow.db", "mlruns/", "mlartifacts/"))], paths
    assert hashlib.md5((original / "mlflow.db").read_bytes()).hexdigest() not in remote_objects(flow["remote"])
    tracked = run(["git", "ls-files"], original).stdout.splitlines()
    assert not [p for p in tracked if p.startswith(("mlflow.db", "mlruns/", "mlartifacts/", ".dvc/config.local"))]
    assert not (clone / "mlflow.db").exists() and not (clone / "mlruns").exists()


def test_clone_starts_without_outputs(flow: dict) -> None:
    """The control: before the pull the clone has nothing, so what follows is the pull's doing."""
    assert flow["before_pull"]["files"] == {}
    assert UP_TO_DATE not in flow["before_pull"]["status"], flow["before_pull"]["status"]


def test_pull_restores_every_output_byte_for_byte(flow: dict) -> None:
    original, pulled = files_under(flow["original"]), files_under(flow["clone"])
    assert original, "the original project wrote no outputs"
    assert sorted(pulled) == sorted(original)
    assert [p for p in original if pulled[p] != original[p]] == []
    assert not (flow["clone"] / SCRATCH).exists()  # resume scratch is not an output, so it is not restored


def test_clone_is_up_to_date_and_repro_runs_nothing(flow: dict) -> None:
    assert UP_TO_DATE in flow["status"], flow["status"]
    assert "Running stage" not in flow["repro"], flow["repro"]
    assert stages_run(flow["repro"]) == set()
    assert not (flow["clone"] / "mlflow.db").exists()  # nothing ran, so nothing was tracked


def test_pulled_bundle_predicts_exactly_what_evaluate_recorded(flow: dict) -> None:
    from pipeline.bundle import ModelBundle

    clone, original = flow["clone"], flow["original"]
    rows = pd.read_parquet(clone / "data/split/test.parquet").drop(columns=["species"])
    predicted = ModelBundle.load(clone / "models/model").predict(rows).reset_index(drop=True)
    recorded = pd.read_csv(original / "reports/predictions.csv").drop(columns="actual")
    assert predicted["prediction"].tolist() == recorded["prediction"].tolist()
    proba = [c for c in recorded.columns if c.startswith("proba_")]
    assert proba and list(predicted.columns) == list(recorded.columns)
    pd.testing.assert_frame_equal(predicted, recorded, check_exact=True)  # CSV floats round-trip exactly
    same_process = ModelBundle.load(original / "models/model").predict(rows).reset_index(drop=True)
    pd.testing.assert_frame_equal(predicted, same_process, check_exact=True)


def test_tests_leave_the_users_default_storage_alone(flow: dict) -> None:
    assert flow["default_remote"] == REMOTE  # the remote that was pushed to and pulled from is the default one...
    assert not flow["default_store"].exists(), flow["default_store"]  # ...with its folder overridden, never written
    assert not (flow["home"] / ".local" / "share" / "pipeline").exists()


def test_default_remote_is_a_per_user_folder_every_clone_shares(tmp_path: Path) -> None:
    """The committed .dvc/config names a default remote at ~/... , which resolves the same from any checkout."""
    expected = os.path.expanduser(DEFAULT_URL)
    project = make_project(tmp_path / "copy")
    clone = tmp_path / "somewhere" / "else"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    for checkout in (ROOT, project, clone):
        # --project: what the committed file says, whatever a .dvc/config.local on this machine overrides
        assert dvc(checkout, "remote", "default", "--project").stdout.strip() == REMOTE, checkout
        assert dvc(checkout, "config", "--project", f"remote.{REMOTE}.url").stdout.strip() == expected, checkout
    written = (ROOT / ".dvc/config").read_text()
    assert f"url = {DEFAULT_URL}\n" in written and "analytics = false" in written
    assert f"remote = {REMOTE}\n" in written
