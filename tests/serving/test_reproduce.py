"""Handing a fine-tuned version's parent to its rebuild (pipeline.serving.reproduce.copy_parent), on real SQLite
stores: the user's, and the rebuild's throwaway one."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.serving.reproduce import copy_parent
from pipeline.serving.source import read, resolve
from tests.serving.test_source import _version, client  # noqa: F401  (the fixture)


def _child(parent: dict[str, str]) -> mlflow.entities.Run:
    with mlflow.start_run() as run:
        mlflow.set_tags(parent)
    return mlflow.get_run(run.info.run_id)


def test_a_model_trained_from_scratch_needs_no_parent(client: MlflowClient, tmp_path: Path) -> None:  # noqa: F811
    assert copy_parent(client, _child({}), f"sqlite:///{tmp_path / 'rebuild.db'}", tmp_path) is None
    assert not (tmp_path / "rebuild.db").exists()


def test_the_recorded_parent_is_registered_in_the_throwaway_store(client: MlflowClient,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    _version(client, tmp_path, "digits-cnn", {"w": torch.zeros(1)})  # version 1: not the parent
    version = _version(client, tmp_path, "digits-cnn", weights)
    child = _child({"parent.name": "digits-cnn", "parent.version": version, "parent.run_id": "x"})
    store = f"sqlite:///{tmp_path / 'rebuild.db'}"
    uri = copy_parent(client, child, store, tmp_path / "work")
    assert uri == "models:/digits-cnn/1"  # the throwaway registry's first version
    rebuild = MlflowClient(store, registry_uri=store)
    mlflow.set_tracking_uri(store)
    spec, state = read(resolve(rebuild, uri, "unused"))
    assert json.dumps(spec) and torch.equal(state["w"], weights["w"])


def test_a_parent_gone_from_the_registry_is_one_line(client: MlflowClient, tmp_path: Path) -> None:  # noqa: F811
    child = _child({"parent.name": "digits-cnn", "parent.version": "9", "parent.run_id": "x"})
    with pytest.raises(PipelineError, match=r"^reproduce: the parent models:/digits-cnn/9 that run \w+ was "
                                            r"fine-tuned from cannot be read \(.*\); expected it in the registry$"):
        copy_parent(client, child, f"sqlite:///{tmp_path / 'rebuild.db'}", tmp_path)
