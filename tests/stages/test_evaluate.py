"""evaluate: the pure function the stage's main calls, run in-process on the data stages' real output.

The data stages run as the pipeline runs them; the model is an untrained, seeded network bundled the way train
bundles one, so these tests take seconds and need no training, no MLflow run and no ``reports/`` folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.bundle import ModelBundle, write_bundle
from pipeline.config import Params, load_params, require_task
from pipeline.decision import Decision
from pipeline.evaluation.result import Evaluation, TrainInfo
from pipeline.io import read_json, write_safetensors
from pipeline.nets import build_net, ensemble_spec, net_spec
from pipeline.preprocess.encoders import Encoders
from pipeline.stages.evaluate import evaluate
from tests.factories import params_doc

STAGES = (
    ("ingest", "--out", "data/raw"),
    ("split", "--raw", "data/raw", "--out", "data/split"),
    ("clean", "--raw", "data/raw", "--split", "data/split", "--out", "data/clean"),
    ("scale", "--raw", "data/raw", "--clean", "data/clean", "--out", "data/scaled"),
)


def prepared(root: Path, **data: str) -> Path:
    """``root`` with params.yaml (``data`` overridden, two baselines) and the four data stages' outputs."""
    params = params_doc(data=data, evaluate={"baselines": ["dummy", "linear"]})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage, *paths in STAGES:
        subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}", "--params", "params.yaml", *paths],
                       cwd=root, check=True, capture_output=True)
    return root


def bundled(root: Path, params: Params, restarts: int) -> TrainInfo:
    """An untrained seeded network bundled into ``root/models/model`` as train bundles one, ``restarts`` restarts'
    weights beside it, and the run summary train would write."""
    encoders = Encoders.from_dict(read_json(root / "data/scaled/encoder.json"))
    task = "classification" if hasattr(encoders.target, "classes_") else "regression"
    params = require_task(params, task)
    classes = list(encoders.target.classes_) if task == "classification" else []
    features = len(pd.read_parquet(root / "data/scaled/test.parquet").columns) - 1
    spec = net_spec(params.model, "tabular", (features,), len(classes) or 1)
    torch.manual_seed(0)
    every = build_net(ensemble_spec(spec, restarts, task))
    members = every.state_dict()  # members.<i>.<name>, as train writes every restart
    write_safetensors(root / "models/restarts.safetensors", members)
    first = {k.split(".", 2)[2]: v for k, v in members.items() if k.startswith("members.0.")}
    decision = Decision.from_report(read_json(root / "data/clean/report.json"), classes)
    write_bundle(root / "models/model", spec, first, root / "data/raw", root / "data/clean", root / "data/scaled",
                 decision, chunk=params.train.eval_chunk)
    history = [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/loss": 1.1 / (e + 1)} for e in range(1, 4)]
    runs = [{"restart": i, "seed": 42 + i, "run_id": f"run{i}", "best_value": 0.5 + i} for i in range(restarts)]
    return TrainInfo("run0", "val/loss", history, runs if restarts > 1 else runs[:1], 0, 3, 3, 100, 10)


def files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time, to show nothing was written."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def run_evaluate(root: Path, train_info: TrainInfo) -> Evaluation:
    """:func:`evaluate` on ``root``'s files, checking it wrote nothing there or in the working directory and left
    no MLflow run active."""
    import mlflow

    before, here = files(root), sorted(Path.cwd().iterdir())
    bundle = ModelBundle.load(root / "models/model")
    params = require_task(load_params(root / "params.yaml"), bundle.task)
    result = evaluate(params, bundle, train_info, root / "data/split", root / "data/scaled", root / "models/model",
                      root / "models/restarts.safetensors")
    assert files(root) == before
    assert sorted(Path.cwd().iterdir()) == here
    assert mlflow.active_run() is None
    return result


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Evaluation, TrainInfo]:
    root = prepared(tmp_path_factory.mktemp("penguins"))
    train_info = bundled(root, load_params(root / "params.yaml"), restarts=2)
    return root, run_evaluate(root, train_info), train_info


def test_classification_scores_every_split_on_the_test_rows(penguins: tuple[Path, Evaluation, TrainInfo]) -> None:
    root, result, _ = penguins
    test = pd.read_parquet(root / "data/split/test.parquet")
    assert (result.task, result.modality, result.primary) == ("classification", "tabular", "accuracy")
    assert result.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert list(result.splits) == ["train", "val", "test"]
    assert len(result.predictions) == len(test)
    # the test accuracy is the share of predicted labels that are the test split's own
    accuracy = float((result.predictions["prediction"].to_numpy() == test["species"].to_numpy()).mean())
    assert result.splits["test"]["accuracy"] == pytest.approx(accuracy)
    assert result.logged["test/accuracy"] == pytest.approx(accuracy)
    assert {"final/train/accuracy", "final/val/accuracy"} <= set(result.logged)


def test_the_table_is_the_predictions_csv(penguins: tuple[Path, Evaluation, TrainInfo]) -> None:
    root, result, _ = penguins
    table = result.table
    assert list(table.columns) == ["actual", "prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    assert table["actual"].tolist() == pd.read_parquet(root / "data/split/test.parquet")["species"].tolist()
    np.testing.assert_allclose(table[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].sum(axis=1), 1.0, rtol=1e-5)


def test_baselines_and_the_verdict_against_the_best(penguins: tuple[Path, Evaluation, TrainInfo]) -> None:
    _, result, _ = penguins
    assert list(result.baselines) == ["dummy", "linear"]
    comparison = result.versus_baselines
    assert comparison is not None
    best = max(result.baselines, key=lambda name: result.baselines[name]["accuracy"])
    assert (comparison["best"], comparison["best_value"]) == (best, result.baselines[best]["accuracy"])
    network = result.splits["test"]["accuracy"]
    assert comparison["verdict"] == ("beats" if network > comparison["best_value"] + 0.01 else
                                     "loses" if network < comparison["best_value"] - 0.01 else "ties")
    assert result.logged["baseline/dummy/accuracy"] == result.baselines["dummy"]["accuracy"]


def test_restart_spread_is_each_restarts_own_test_score(penguins: tuple[Path, Evaluation, TrainInfo]) -> None:
    root, result, train_info = penguins
    restarts = result.restarts
    assert restarts is not None and restarts["n"] == 2 and restarts["selected"] == "restart 0"
    each = [v["test_accuracy"] for v in restarts["per_restart"].values()]
    assert restarts["test_accuracy_mean"] == pytest.approx(np.mean(each))
    assert restarts["test_accuracy_std"] == pytest.approx(np.std(each, ddof=1))
    # restart 0's weights are the bundle's: its score is the model's
    assert each[0] == pytest.approx(result.splits["test"]["accuracy"])
    assert [v["run_id"] for v in restarts["per_restart"].values()] == [r["run_id"] for r in train_info.restarts]
    assert restarts["per_restart"]["1"]["val_loss"] == 1.5


def test_metrics_json_holds_what_was_measured_in_order(penguins: tuple[Path, Evaluation, TrainInfo]) -> None:
    _, result, _ = penguins
    document = result.metrics_json("run0")
    assert list(document) == ["train", "val", "test", "baselines", "versus_baselines", "restarts", "diagnosis",
                              "mlflow_run_id"]
    assert document["mlflow_run_id"] == "run0"
    assert [f["kind"] for f in document["diagnosis"]] == [f.kind for f in result.findings]
    assert result.prior_correction is None  # penguins are not resampled (clean.imbalance auto: none)
    assert "trained 3 epochs, best epoch 3" in result.diagnosis  # val/loss falls to its lowest at epoch 3


def test_regression_scores_in_the_targets_units(tmp_path: Path) -> None:
    root = prepared(tmp_path, source="diabetes", target="progression")
    result = run_evaluate(root, bundled(root, load_params(root / "params.yaml"), restarts=1))
    test = pd.read_parquet(root / "data/split/test.parquet")
    assert (result.task, result.primary, result.classes, result.restarts) == ("regression", "r2", [], None)
    error = np.abs(result.predictions["prediction"].to_numpy() - test["progression"].to_numpy())
    assert result.splits["test"]["mae"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert list(result.table.columns) == ["actual", "prediction"]
    assert list(result.metrics) == ["train", "val", "test", "baselines", "versus_baselines"]
