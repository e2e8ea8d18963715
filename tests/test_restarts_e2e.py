"""Random restarts end to end: N seeded trainings, the spread of their test metric, and an ensemble that is
registered and reloads with the predictions evaluate recorded. Real `dvc repro`, real MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.project import dvc, make_project, run, set_params, stages_run

pytestmark = pytest.mark.slow


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("restarts"), train__max_epochs=15, train__early_stopping__patience=5,
                        train__restarts=3, train__ensemble=True)
    dvc(root, "repro")
    return root


@pytest.fixture(scope="module")
def client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def test_metrics_report_each_restart_and_their_spread(project: Path) -> None:
    metrics = yaml.safe_load((project / "reports/metrics.json").read_text())
    restarts = metrics["restarts"]
    assert restarts["n"] == 3 and restarts["selected"] == "ensemble"
    each = [restarts["per_restart"][str(i)]["test_accuracy"] for i in range(3)]
    assert [restarts["per_restart"][str(i)]["seed"] for i in range(3)] == [42, 43, 44]
    assert restarts["test_accuracy_mean"] == pytest.approx(sum(each) / 3)
    assert restarts["test_accuracy_std"] == pytest.approx(pd.Series(each).std(ddof=1))
    assert metrics["test"]["accuracy"] >= 0.9


def test_the_registered_ensemble_reloads_with_the_recorded_predictions(project: Path, tmp_path: Path) -> None:
    assert yaml.safe_load((project / "models/model/net.json").read_text())["kind"] == "ensemble"
    rows = pd.read_parquet(project / "data/split/test.parquet").drop(columns=["species"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(tmp_path / "rows.csv"),
         "--output", str(tmp_path / "out.csv")], project)
    predicted, recorded = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(project / "reports/predictions.csv")
    assert predicted["prediction"].tolist() == recorded["prediction"].tolist()
    proba = [c for c in recorded.columns if c.startswith("proba_")]
    pd.testing.assert_frame_equal(predicted[proba], recorded[proba], rtol=0, atol=1e-6)


def test_each_restart_is_a_nested_mlflow_run_with_its_seed_and_test_score(project: Path, client: MlflowClient) -> None:
    info = yaml.safe_load((project / "models/train.json").read_text())
    parent = client.get_run(info["run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(c.data.params["seed"]) for c in children) == [42, 43, 44]
    assert all(c.info.status == "FINISHED" for c in [parent, *children])
    scores = [c.data.metrics["test/accuracy"] for c in children]
    assert parent.data.metrics["restarts/test/accuracy/mean"] == pytest.approx(sum(scores) / 3)
    assert parent.data.tags["restarts.selected"] == "ensemble"
    history = client.get_metric_history(children[0].info.run_id, "val/loss")
    assert len(history) == children[0].data.metrics["epochs"]  # each restart's own curve


def test_best_single_network_is_a_restart_chosen_on_validation(project: Path) -> None:
    restarts_md5 = md5(project / "models/restarts.safetensors")
    ensemble_weights = load_file(project / "models/model/weights.safetensors")
    set_params(project, train__ensemble=False)
    rerun = dvc(project, "repro")
    assert stages_run(rerun.stdout) == {"train", "evaluate"}
    # the same seeds give the same restarts, bit for bit, whatever is kept of them
    assert md5(project / "models/restarts.safetensors") == restarts_md5
    info = yaml.safe_load((project / "models/train.json").read_text())
    values = [r["best_value"] for r in info["restarts"]]
    chosen = info["selected"]
    assert chosen == values.index(min(values))
    single = load_file(project / "models/model/weights.safetensors")
    prefix = f"members.{chosen}."
    assert set(single) == {k[len(prefix):] for k in ensemble_weights if k.startswith(prefix)}
    assert all(torch.equal(v, ensemble_weights[prefix + k]) for k, v in single.items())
    metrics = yaml.safe_load((project / "reports/metrics.json").read_text())
    assert metrics["restarts"]["selected"] == f"restart {chosen}"
    assert metrics["test"]["accuracy"] == pytest.approx(metrics["restarts"]["per_restart"][str(chosen)]["test_accuracy"])
