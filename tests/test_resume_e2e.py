"""A training killed by SIGKILL midway through `dvc repro` resumes from its last checkpoint on the next repro and
ends with the same weights as a training that was never interrupted (CPU, real processes, real DVC)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.training import checkpoints
from tests.project import BIN, dvc, env, make_project

pytestmark = pytest.mark.slow

# long enough that the kill lands mid-training; no early stop, so both runs train every epoch
PARAMS = {"train__max_epochs": 150, "train__early_stopping__patience": 150}


def _weights_md5(project: Path) -> str:
    return hashlib.md5((project / "models" / "model" / "weights.safetensors").read_bytes()).hexdigest()


def _epoch_saved(path: Path) -> int:
    # no error is caught: saves are atomic, so a checkpoint read mid-training is always whole, and one that is not
    # fails the test naming the file
    return int(checkpoints.load(path)["epoch"]) if path.is_file() else -1


def test_sigkill_mid_training_then_repro_resumes_to_identical_weights(tmp_path_factory: pytest.TempPathFactory) -> None:
    whole = make_project(tmp_path_factory.mktemp("whole"), **PARAMS)
    dvc(whole, "repro")
    expected = _weights_md5(whole)

    cut = make_project(tmp_path_factory.mktemp("cut"), **PARAMS)
    last = cut / "models" / "checkpoints" / "last.ckpt"
    process = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=cut, env=env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _epoch_saved(last) < 5:
        assert process.poll() is None, "dvc repro ended before training reached epoch 5"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage's python alike, with no chance to clean up
    process.wait()
    killed_at = _epoch_saved(last)
    assert 5 <= killed_at < 149, killed_at
    assert not (cut / "models" / "model" / "weights.safetensors").exists()
    lock = (cut / "dvc.lock").read_text() if (cut / "dvc.lock").exists() else ""
    assert "models/model" not in lock  # the train stage was never recorded as done

    # DVC holds a lock file for the whole repro; a SIGKILLed dvc leaves it, and the next dvc clears it itself
    again = dvc(cut, "repro")
    assert f"resuming from models/checkpoints/last.ckpt: {killed_at + 1} of 150 epochs done" in again.stdout
    assert _weights_md5(cut) == expected

    # the resumed run carries the whole training: the epochs before the kill were replayed into it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cut / 'mlflow.db'}")
    info = json.loads((cut / "models" / "train.json").read_text())
    run = client.get_run(info["run_id"])
    assert run.data.tags["resumed_from_epoch"] == str(killed_at + 1) and info["resumed_from_epoch"] == killed_at + 1
    steps = [m.step for m in client.get_metric_history(info["run_id"], "val/loss")]
    assert sorted(steps) == list(range(150))
