"""evaluate's tracking: the model is checked after MLflow reloads it, and registered once per run and weights.

A real SQLite MLflow store in a temporary folder; the data stages' real outputs and an untrained seeded bundle
(as in ``test_evaluate``), so no training is needed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.bundle import WEIGHTS, ModelBundle
from pipeline.config import load_params, require_task
from pipeline.errors import PipelineError
from pipeline.evaluation.result import Evaluation
from pipeline.io import write_safetensors
from pipeline.stages.evaluate import print_summary, track, write_predictions
from tests.stages.test_evaluate import bundled, prepared, run_evaluate


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Evaluation]:
    """The data stages' outputs, a bundle in ``models/model`` and what evaluate measured of it."""
    root = prepared(tmp_path_factory.mktemp("penguins"))
    train_info = bundled(root, load_params(root / "params.yaml"), restarts=1)
    return root, run_evaluate(root, train_info)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh project folder whose MLflow store is ``mlflow.db`` in it; the global tracking URI is restored."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    before = mlflow.get_tracking_uri()
    yield tmp_path
    mlflow.set_tracking_uri(before)


def _train_run(root: Path) -> str:
    """A finished run, as train leaves one for evaluate to continue."""
    client = tracking.configure(root)
    with mlflow.start_run(experiment_id=tracking.experiment_id(client, "penguins", root)) as run:
        pass
    return run.info.run_id


def _track(root: Path, project: Path, evaluation: Evaluation, run_id: str, model_dir: Path | None = None) -> dict:
    params = require_task(load_params(root / "params.yaml"), evaluation.task)
    reports = project / "reports"
    reports.mkdir(exist_ok=True)
    write_predictions(reports, evaluation)
    model_dir = model_dir or root / "models/model"
    return track(project, params, ModelBundle.load(root / "models/model"), model_dir, reports, evaluation, [], run_id)


def test_an_evaluate_only_rerun_keeps_the_version_that_holds_the_same_weights(
    evaluated: tuple[Path, Evaluation], store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, evaluation = evaluated
    run_id = _train_run(store)
    first = _track(root, store, evaluation, run_id)
    assert first["version"] == 1 and "reused" not in first
    again = _track(root, store, evaluation, run_id)  # evaluate rerun alone: same run, same weights
    assert again["version"] == 1 and again["reused"] is True and again["uri"] == "models:/penguins-fnn/1"
    client = MlflowClient()
    (version,) = client.search_model_versions("name = 'penguins-fnn'")
    assert version.tags["weights_md5"] == tracking.file_md5(root / "models/model" / WEIGHTS)
    assert client.get_run(run_id).data.tags["registered_version"] == "1"
    print_summary(evaluation, again)
    assert "kept penguins-fnn version 1 (the same run's identical weights; nothing new to register)" in \
        capsys.readouterr().out

    other = _track(root, store, evaluation, _train_run(store))  # another training run is another version
    assert other["version"] == 2 and "reused" not in other


def test_a_reloaded_model_that_predicts_differently_is_refused_before_registering(
    evaluated: tuple[Path, Evaluation], store: Path
) -> None:
    root, evaluation = evaluated
    # the folder MLflow logs holds other weights than the bundle evaluate measured: the reloaded model differs
    changed = shutil.copytree(root / "models/model", store / "changed")
    weights = ModelBundle.load(changed).net.state_dict()
    write_safetensors(changed / WEIGHTS, {k: (v + 1.0).contiguous() for k, v in weights.items()})
    run_id = _train_run(store)
    with pytest.raises(PipelineError, match=r"the reloaded MLflow model predicts differently from the bundle"):
        _track(root, store, evaluation, run_id, model_dir=changed)
    assert MlflowClient().search_model_versions("name = 'penguins-fnn'") == []
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and "registered_version" not in run.data.tags
