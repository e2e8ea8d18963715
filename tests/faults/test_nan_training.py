"""A loss that turns NaN a few epochs into training: train stops naming the epoch and nothing is recorded as done."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.asserts import assert_one_error
from tests.faults.helpers import lock_stages, registered_versions, runs, temp_leftovers
from tests.project import dvc, make_project

pytestmark = pytest.mark.slow


def test_a_loss_overflowing_mid_training_stops_train_with_the_epoch(tmp_path: Path) -> None:
    # full-batch SGD at lr 3 on the diabetes regression: each step overshoots further, and the loss overflows
    # after a few finite epochs (seeded, so always the same epoch)
    project = make_project(tmp_path, data__source="diabetes", data__target="progression",
                           evaluate__primary_metric="rmse", train__optimizer="sgd", train__lr=3.0,
                           train__update="full_batch", evaluate__baselines=["dummy"])
    done = dvc(project, "repro", check=False)
    assert done.returncode != 0
    line = assert_one_error(done, "train")
    found = re.fullmatch(r"train: error: (train|val)/loss = (nan|inf) at epoch (\d+): expected a finite loss; "
                         r"lower train\.lr or change the initialisation", line)
    assert found, line
    assert int(found.group(3)) >= 1, "the loss should have been finite for the first epochs"

    assert registered_versions(project) == []
    (tracked,) = runs(project)
    assert tracked.info.status == "FAILED"
    assert "val/loss" in tracked.data.metrics  # the finite epochs before were logged
    # the environment is recorded when the run starts, so a failed run says what it ran on
    assert {"env.cuda", "env.cudnn", "env.gpu", "env.torch", "env.python"} <= set(tracked.data.tags)
    assert not any(k.startswith("dvc.out.models/") for k in tracked.data.tags)  # it wrote no model
    lock = lock_stages(project)
    assert "train" not in lock and "evaluate" not in lock and "scale" in lock
    assert not (project / "models" / "model").exists() and not (project / "models" / "train.json").exists()
    assert temp_leftovers(project) == []
