"""Lineage on reruns (real `dvc repro`, real MLflow): each run records its own model's hash and only the data it
was made from, its environment from the start; an evaluate-only rerun keeps the version it already registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.io import file_md5
from tests.project import dvc, make_project, set_params, stages_run

pytestmark = pytest.mark.slow
FAST = {"train__max_epochs": 3, "train__early_stopping__patience": 3, "evaluate__baselines": ["dummy"]}
DATA = ("data/raw", "data/split", "data/clean", "data/scaled")


def _locked(project: Path) -> dict[str, str]:
    """Every output's md5 in ``dvc.lock``, by path."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for entry in stages.values() for out in entry.get("outs", [])}


def _train_run(project: Path, client: MlflowClient):  # noqa: ANN202
    return client.get_run(json.loads((project / "models" / "train.json").read_text())["run_id"])


def test_a_rerun_records_its_own_model_hash_and_only_its_inputs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", **FAST)
    dvc(project, "repro")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    first, first_lock = _train_run(project, client), _locked(project)

    set_params(project, train__lr=0.02, **FAST)
    assert stages_run(dvc(project, "repro").stdout) == {"train", "evaluate"}
    second, second_lock = _train_run(project, client), _locked(project)
    assert second.info.run_id != first.info.run_id
    assert second_lock["models/model"] != first_lock["models/model"]  # the new lr trained other weights

    for run, lock in ((first, first_lock), (second, second_lock)):
        tags = run.data.tags
        # this run's own outputs, hashed as DVC hashed them when it locked the stage
        for out in ("models/model", "models/restarts.safetensors", "models/train.json"):
            assert tags[f"dvc.out.{out}"] == lock[out], out
        assert tags["model.weights_md5"] != ""
        # the data it was made from; nothing of evaluate's (the lock still held the previous run's at train start)
        assert {k for k in tags if k.startswith("dvc.out.")} == {f"dvc.out.{p}" for p in (
            *DATA, "models/model", "models/restarts.safetensors", "models/train.json")}
        assert all(tags[f"dvc.out.{p}"] == lock[p] for p in DATA)
        assert {"env.cuda", "env.gpu", "env.torch", "env.cudnn"} <= set(tags)
    assert second.data.tags["model.weights_md5"] == file_md5(project / "models" / "model" / "weights.safetensors")
    assert second.data.tags["model.weights_md5"] != first.data.tags["model.weights_md5"]

    # evaluate alone reruns: the same run and weights, so the version registered for them is kept
    set_params(project, train__lr=0.02, **{**FAST, "evaluate__baselines": ["dummy", "linear"]})
    again = dvc(project, "repro")
    assert stages_run(again.stdout) == {"evaluate"}, again.stdout
    assert "kept penguins-fnn version 2 (the same run's identical weights" in again.stdout
    model = json.loads((project / "reports" / "model.json").read_text())
    assert (model["version"], model["reused"], model["run_id"]) == (2, True, second.info.run_id)
    versions = client.search_model_versions("name = 'penguins-fnn'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {first.info.run_id, second.info.run_id}
