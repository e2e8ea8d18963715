"""Resolving and reading the version ``train.init_from`` names, on a real SQLite tracking store and registry."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from pipeline.errors import PipelineError
from pipeline.serving.source import Ancestor, Source, ancestry, chain_line, parse, read, resolve
from tests.project import free_port

SPEC = {"kind": "fnn", "in_features": 2, "out_features": 3, "hidden": [4]}


def _version(client: MlflowClient, root: Path, name: str, weights: dict[str, torch.Tensor]) -> str:
    """Register a version laid out as ``log_bundle`` lays it out: an MLmodel naming the bundle, which MLflow
    copies to artifacts/<the bundle folder's name> (``models/model``: artifacts/model)."""
    bundle = root / name / "model" / "artifacts" / "model"
    bundle.mkdir(parents=True, exist_ok=True)
    (root / name / "model" / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      bundle:\n        path: artifacts/model\n")
    (bundle / "net.json").write_text(json.dumps(SPEC))
    save_file(weights, str(bundle / "weights.safetensors"))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(root / name / "model"), "model")
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("transfer")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(("value", "expected"), [
    (3, ("penguins-fnn", "3", None)),
    ("champion", ("penguins-fnn", None, "champion")),
    ("models:/digits-cnn/2", ("digits-cnn", "2", None)),
    ("models:/digits-cnn@best", ("digits-cnn", None, "best")),
])
def test_a_number_an_alias_or_a_uri_names_one_model(value: str | int, expected: tuple) -> None:
    assert parse(value, "penguins-fnn") == expected


def test_anything_else_is_refused_saying_what_is_expected() -> None:
    with pytest.raises(PipelineError, match=r"^train.init_from = 'runs:/abc/model': expected a version number, an "
                                            r"alias, models:/<name>/<version> or models:/<name>@<alias>$"):
        parse("runs:/abc/model", "penguins-fnn")


def test_an_alias_resolves_once_to_the_version_it_points_at(client: MlflowClient, tmp_path: Path) -> None:
    first = _version(client, tmp_path, "digits-cnn", {"w": torch.zeros(2)})
    second = _version(client, tmp_path, "digits-cnn", {"w": torch.ones(2)})
    client.set_registered_model_alias("digits-cnn", "champion", first)
    source = resolve(client, "champion", "digits-cnn")
    assert (source.name, source.version, source.uri) == ("digits-cnn", first, f"models:/digits-cnn/{first}")
    assert source.run_id == client.get_model_version("digits-cnn", first).run_id
    client.set_registered_model_alias("digits-cnn", "champion", second)  # the alias moves; the resolved one stays
    assert source.version == first and resolve(client, "champion", "digits-cnn").version == second
    spec, state = read(source)
    assert spec == SPEC and torch.equal(state["w"], torch.zeros(2))
    assert torch.equal(read(resolve(client, f"models:/digits-cnn/{second}", "other"))[1]["w"], torch.ones(2))


@pytest.mark.parametrize(("value", "message"), [
    ("7", "train.init_from = '7': model 'digits-cnn' has no version 7 in the registry"),
    ("nope", "train.init_from = 'nope': model 'digits-cnn' has no alias 'nope' in the registry"),
    ("models:/gone/1", "train.init_from = 'models:/gone/1': no registered model 'gone' in the registry"),
])
def test_an_unknown_model_version_or_alias_is_one_line(client: MlflowClient, tmp_path: Path, value: str,
                                                       message: str) -> None:
    _version(client, tmp_path, "digits-cnn", {"w": torch.zeros(2)})
    with pytest.raises(PipelineError) as error:
        resolve(client, value, "digits-cnn")
    assert str(error.value) == f"{message}; expected a registered version (see: models show)"


def test_a_version_without_a_bundle_is_refused(client: MlflowClient, tmp_path: Path) -> None:
    version = _version(client, tmp_path, "digits-cnn", {"w": torch.zeros(2)})
    source = Source("digits-cnn", version, "run", "champion")
    assert read(source)[0] == SPEC
    stored = Path(client.get_model_version("digits-cnn", version).source.removeprefix("file://"))
    (stored / "artifacts" / "model" / "weights.safetensors").unlink()  # the store's copy
    with pytest.raises(PipelineError, match=r"^train.init_from = 'champion': models:/digits-cnn/\d+ holds no "
                                            r"net.json and weights.safetensors; expected a version this pipeline"):
        read(source)


@pytest.mark.parametrize("path", ["", "../../elsewhere", None])
def test_a_version_whose_mlmodel_names_no_bundle_is_refused(client: MlflowClient, tmp_path: Path,
                                                            path: str | None) -> None:
    version = _version(client, tmp_path, "digits-cnn", {"w": torch.zeros(2)})
    stored = Path(client.get_model_version("digits-cnn", version).source.removeprefix("file://"))
    (stored / "MLmodel").write_text("flavors: {}\n" if path is None else
                                    f"flavors:\n  python_function:\n    artifacts:\n      bundle:\n        path: '{path}'\n")
    with pytest.raises(PipelineError) as error:
        read(Source("digits-cnn", version, "run", "3"))
    assert str(error.value) == (f"train.init_from = '3': models:/digits-cnn/{version}'s MLmodel names no model bundle; "
                                "expected a version this pipeline registered")


def test_a_store_that_does_not_answer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # refused at once, not after minutes of retries
    with pytest.raises(PipelineError) as error:
        resolve(MlflowClient(f"http://127.0.0.1:{free_port()}"), "champion", "digits-cnn")
    line = str(error.value)
    assert line.startswith("train.init_from = 'champion': the tracking store did not answer (API request to "
                           "http://127.0.0.1:") and "Connection refused" in line and "\n" not in line


def _run(tags: dict[str, str]) -> str:
    with mlflow.start_run() as run:
        mlflow.set_tags(tags)
    return run.info.run_id


def _parent(name: str, version: str, run_id: str) -> dict[str, str]:
    return {"parent.name": name, "parent.version": version, "parent.run_id": run_id}


def test_the_lineage_follows_recorded_parents_back_to_random_weights(client: MlflowClient) -> None:
    scratch = _run({})
    first = _run(_parent("digits-cnn", "1", scratch))
    second = _run(_parent("parity-cnn", "4", first))
    chain = ancestry(client, second)
    assert chain == [Ancestor("parity-cnn", "4", first), Ancestor("digits-cnn", "1", scratch)]
    assert chain_line("models:/odd-cnn/2", chain) == \
        "models:/odd-cnn/2 <- models:/parity-cnn/4 <- models:/digits-cnn/1 <- random initial weights"
    assert chain_line("models:/digits-cnn/1", ancestry(client, scratch)) == \
        "models:/digits-cnn/1 <- random initial weights"


def test_a_parent_from_another_store_ends_the_chain_saying_so(client: MlflowClient) -> None:
    child = _run(_parent("imagenet-cnn", "7", "0" * 32))
    chain = ancestry(client, child)
    assert chain == [Ancestor("imagenet-cnn", "7", "0" * 32, found=False)]
    assert chain_line("models:/mine/1", chain) == (f"models:/mine/1 <- models:/imagenet-cnn/7 (run {'0' * 32} is not "
                                                   "in this store: what it started from is unknown)")


def test_a_cycle_written_by_hand_is_cut_not_followed_forever(client: MlflowClient) -> None:
    looping = _run({})
    client.set_tag(looping, "parent.run_id", looping)
    assert len(ancestry(client, looping, limit=5)) == 5
