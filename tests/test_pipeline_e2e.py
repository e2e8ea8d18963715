"""End to end: a real `dvc repro` in a fresh git repo, a real MLflow store, real training and registration.

The tests in this module run in order and share one project: the first repro, then a no-op repro, predict,
then param changes that must rerun only the stages that read them.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.project import churn_csv, dvc, make_project, run, set_params, stages_run

pytestmark = pytest.mark.slow
ALL_STAGES = {"ingest", "split", "clean", "scale", "train", "evaluate"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("e2e"), train__max_epochs=30, train__early_stopping__patience=5)
    first = dvc(root, "repro")
    assert stages_run(first.stdout) == ALL_STAGES, first.stdout
    return root


@pytest.fixture(scope="module")
def client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def test_outputs_written(project: Path) -> None:
    for path in ["data/raw/data.parquet", "data/raw/profile.json", "data/split/test.parquet", "data/clean/imputer.json",
                 "data/scaled/encoder.json", "models/model/weights.safetensors", "models/train.json",
                 "reports/metrics.json", "reports/plots/images/confusion.png", "reports/plots/confusion.csv",
                 "reports/predictions.csv", "reports/model.json", "dvc.lock"]:
        assert (project / path).is_file(), path
    metrics = yaml.safe_load((project / "reports/metrics.json").read_text())["test"]
    assert metrics["accuracy"] >= 0.9  # penguins is nearly separable; anything lower means training broke
    assert set(metrics["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert (project / "reports/plots/images/confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = dvc(project, "metrics", "show").stdout
    assert "test.accuracy" in shown
    everything = yaml.safe_load((project / "reports/metrics.json").read_text())
    assert set(everything) >= {"train", "val", "test", "baselines", "versus_baselines", "mlflow_run_id"}
    assert {"roc_auc", "log_loss", "ece", "balanced_accuracy"} <= set(everything["val"])
    assert set(everything["baselines"]) == {"dummy", "linear", "forest", "nearest"}
    assert everything["baselines"]["dummy"]["accuracy"] < 0.6  # the majority class of three species
    assert everything["versus_baselines"]["verdict"] in ("beats", "ties", "loses")
    diagnosis = (project / "reports/diagnosis.txt").read_text()
    assert diagnosis.startswith("Diagnosis: penguins fnn\n") and "accuracy: train" in diagnosis
    assert isinstance(everything["diagnosis"], list)


def test_mlflow_run_records_params_metrics_and_lineage(project: Path, client: MlflowClient) -> None:
    experiment = client.get_experiment_by_name("penguins")
    assert experiment is not None
    (run_,) = client.search_runs([experiment.experiment_id])
    assert run_.info.status == "FINISHED"
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert run_.data.params["train.lr"] == str(params["train"]["lr"])
    assert run_.data.params["train.max_epochs"] == "30"
    assert params["model"]["hidden"] == "auto"
    assert run_.data.params["model.hidden"] == "[64, 32]"  # MLflow records what 'auto' became
    assert run_.data.params["seed"] == str(params["seed"])
    assert run_.data.tags["seed"] == str(params["seed"])
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert run_.data.tags["git.commit"] == head
    assert run_.data.tags["env.torch"].startswith("2.13")
    epochs = int(run_.data.metrics["epochs"])
    assert 1 <= epochs <= 30
    for name in ("train/loss", "val/loss", "train/acc", "val/acc"):
        assert [m.step for m in client.get_metric_history(run_.info.run_id, name)] == list(range(epochs)), name
    assert run_.data.metrics["test/accuracy"] == yaml.safe_load((project / "reports/metrics.json").read_text())["test"]["accuracy"]
    assert "baseline/forest/accuracy" in run_.data.metrics and "final/val/accuracy" in run_.data.metrics
    assert run_.data.tags["baseline.verdict"] in ("beats", "ties", "loses")
    assert run_.data.tags["dvc.out.data/scaled"].endswith(".dir")  # lineage from dvc.lock
    assert run_.data.tags["host"] and run_.data.tags["pid"].isdigit()
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"config", "data", "environment", "model", "plots", "evaluation"} <= artifacts
    summary = client.download_artifacts(run_.info.run_id, "model/summary.txt")
    assert "total (trainable)" in Path(summary).read_text()


def test_model_registered_from_the_run(project: Path, client: MlflowClient) -> None:
    info = yaml.safe_load((project / "reports/model.json").read_text())
    train_info = yaml.safe_load((project / "models/train.json").read_text())
    version = client.get_model_version("penguins-fnn", "1")
    assert info["version"] == 1 and version.run_id == train_info["run_id"] == info["run_id"]


def test_second_repro_runs_nothing(project: Path) -> None:
    again = dvc(project, "repro")
    assert stages_run(again.stdout) == set(), again.stdout
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout


def test_predict_reproduces_evaluate_predictions(project: Path, tmp_path: Path) -> None:
    test_rows = pd.read_parquet(project / "data/split/test.parquet").drop(columns=["species"])
    rows_csv = tmp_path / "rows.csv"
    test_rows.to_csv(rows_csv, index=False)
    recorded = pd.read_csv(project / "reports/predictions.csv")
    run(["python", "-m", "pipeline", "models", "pin", "1", "--alias", "champion"], project)
    for model in ("1", "champion", "models:/penguins-fnn/1"):
        out = tmp_path / f"preds-{model.replace(':', '_').replace('/', '_')}.csv"
        run(["python", "-m", "pipeline", "predict", "--model", model, "--input", str(rows_csv), "--output", str(out)], project)
        predicted = pd.read_csv(out)
        assert predicted["prediction"].tolist() == recorded["prediction"].tolist()
        proba = [c for c in recorded.columns if c.startswith("proba_")]
        pd.testing.assert_frame_equal(predicted[proba], recorded[proba], rtol=0, atol=1e-6)
    listing = run(["python", "-m", "pipeline", "models", "list"], project).stdout
    assert [line.split()[:2] for line in listing.splitlines()[1:]] == [["1", "champion"]], listing


def test_predict_rejects_bad_rows_with_one_line(project: Path, tmp_path: Path) -> None:
    cases = {
        "island,bill_length_mm\nDream,40\n": "missing input column(s) ['bill_depth_mm'",
        "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\nDream,abc,18,190,3500,male,2008\n":
            "column 'bill_length_mm': expected numbers, got 'abc'",
    }
    for i, (text, expected) in enumerate(cases.items()):
        rows = tmp_path / f"bad{i}.csv"
        rows.write_text(text)
        done = run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows), "--output", "out.csv"],
                   project, check=False)
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"pipeline: error: {rows}: {expected}"), line
        assert not (project / "out.csv").exists()


def test_changing_lr_reruns_only_train_and_evaluate(project: Path, client: MlflowClient) -> None:
    set_params(project, train__lr=0.005)
    changed = dvc(project, "repro")
    assert stages_run(changed.stdout) == {"train", "evaluate"}, changed.stdout
    assert client.get_model_version("penguins-fnn", "2").run_id != client.get_model_version("penguins-fnn", "1").run_id


def test_changing_clean_param_reruns_clean_onward(project: Path) -> None:
    set_params(project, clean__numeric="mean")
    changed = dvc(project, "repro")
    assert stages_run(changed.stdout) == {"clean", "scale", "train", "evaluate"}, changed.stdout


def test_other_strategies_run_end_to_end_and_serve_identically(tmp_path_factory: pytest.TempPathFactory) -> None:
    """knn imputation, indicators, a dropped column, class weights, robust scaling and ordinal encoding."""
    root = make_project(
        tmp_path_factory.mktemp("strategies"), train__max_epochs=15, train__early_stopping__patience=5,
        clean__numeric="knn", clean__indicators=True, clean__max_missing=0.02, clean__imbalance="class_weight",
        scale__method="robust", scale__encoding="ordinal",
    )
    dvc(root, "repro")
    report = yaml.safe_load((root / "data/clean/report.json").read_text())
    assert report["columns_dropped"] == ["sex"]  # about 3% of train is missing sex
    assert report["train_class_counts_before"] == report["train_class_counts_after"]
    assert set(report["class_weight"]) == {"Adelie", "Chinstrap", "Gentoo"}
    encoder = yaml.safe_load((root / "data/scaled/encoder.json").read_text())["features"]
    assert "island" in encoder["numeric_"] + encoder["categorical_"] and "sex" not in encoder["categorical_"]
    rows = pd.read_parquet(root / "data/split/test.parquet").drop(columns=["species", "sex"])  # sex is not needed
    rows_csv = tmp_path_factory.mktemp("rows") / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    out = rows_csv.with_name("preds.csv")
    run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows_csv), "--output", str(out)], root)
    recorded = pd.read_csv(root / "reports/predictions.csv")
    assert pd.read_csv(out)["prediction"].tolist() == recorded["prediction"].tolist()
    assert yaml.safe_load((root / "reports/metrics.json").read_text())["test"]["accuracy"] >= 0.9


def test_diabetes_regression_runs_end_to_end_and_serves_identically(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = make_project(
        tmp_path_factory.mktemp("diabetes"), data__source="diabetes", data__target="progression",
        evaluate__primary_metric="rmse", train__lr=0.001, train__max_epochs=40, train__early_stopping__patience=10,
    )
    done = dvc(root, "repro")
    assert "task regression (the target holds 214 distinct whole numbers)" in done.stdout
    assert "ingest: for a regression task, model.kind: auto -> fnn, model.hidden: auto -> [64, 32], " \
           "clean.imbalance: auto -> none" in done.stdout  # primary_metric was set: not auto, not listed
    assert "clean: filled 0 missing values (median/most_frequent); no classes to balance" in done.stdout
    metrics = yaml.safe_load((root / "reports/metrics.json").read_text())["test"]
    assert set(metrics) == {"mae", "rmse", "r2", "mape"} and metrics["mape"] > 0  # progression is never 0
    assert metrics["r2"] > 0.2  # a model that learned nothing scores about 0
    assert (root / "reports/plots/images/predicted_vs_actual.png").is_file()
    assert not (root / "reports/plots/images/confusion.png").exists()
    rows = pd.read_parquet(root / "data/split/test.parquet").drop(columns=["progression"])
    rows_csv = tmp_path_factory.mktemp("rows") / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    out = rows_csv.with_name("preds.csv")
    run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows_csv), "--output", str(out)], root)
    recorded = pd.read_csv(root / "reports/predictions.csv")
    assert list(pd.read_csv(out).columns) == ["prediction"]
    np.testing.assert_allclose(pd.read_csv(out)["prediction"], recorded["prediction"], rtol=1e-6)
    listing = run(["python", "-m", "pipeline", "models", "list"], root).stdout
    assert "rmse" in listing.splitlines()[1]


def test_a_users_csv_runs_end_to_end_predicts_its_own_labels_and_reruns_when_edited(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = make_project(
        tmp_path_factory.mktemp("users-csv"), data__source="inputs/churn.csv", data__target="churned",
        train__max_epochs=10, train__early_stopping__patience=5,
    )
    (root / "inputs" / "churn.csv").write_text(churn_csv())
    assert stages_run(dvc(root, "repro").stdout) == ALL_STAGES
    assert yaml.safe_load((root / "reports/model.json").read_text())["name"] == "churn-fnn"
    rows = tmp_path_factory.mktemp("rows") / "rows.csv"
    rows.write_text("id,when,plan,spend\nNEW1,2024-02-01,pro,3.0\nNEW2,2024-02-02,basic,55.5\n")
    out = rows.with_name("preds.csv")
    run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows), "--output", str(out)], root)
    predicted = pd.read_csv(out)
    assert set(predicted["prediction"]) <= {"yes", "no"}
    assert list(predicted.columns) == ["prediction", "proba_no", "proba_yes"]
    (root / "inputs" / "churn.csv").write_text(churn_csv(rows=44))
    assert stages_run(dvc(root, "repro").stdout) == ALL_STAGES  # a changed file reruns ingest and all after it
