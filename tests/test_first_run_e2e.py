"""A new user's first run on their own file, default params: real `dvc repro` on synthetic tables with the
properties that broke it before (issue 15): a numeric target under `data.task: auto`, and a 3% positive class.

Each table is made here, seeded, and written to `inputs/` as a user would; only `data.source` and `data.target`
are set (and, where a test says so, the one knob it is about).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.asserts import assert_one_error
from tests.project import dvc, make_project, run, set_params, stages_run

pytestmark = pytest.mark.slow
ALL_STAGES = {"ingest", "split", "clean", "scale", "train", "evaluate"}


def _regression_csv(path: Path, rows: int = 400) -> None:
    """A numeric target: a linear signal in four columns, heavy-tailed noise and a few gross outliers."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 4))
    y = 10 + 3 * x[:, 0] - 2 * x[:, 1] + x[:, 2] * x[:, 3] + rng.standard_t(3, size=rows)
    y[rng.choice(rows, size=8, replace=False)] += 40.0
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(price=y.round(3))
    frame.to_csv(path, index=False)


def _rare_positive_csv(path: Path, rows: int = 3000) -> float:
    """Eight numeric columns and a yes/no target that is "yes" on ~3.5% of rows; the share is returned."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 8))
    logit = -9 + 3.2 * x[:, 0] + 2.8 * x[:, 1] - 2.0 * x[:, 2]
    positive = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(8)])
    frame["fraud"] = np.where(positive, "yes", "no")
    frame.to_csv(path, index=False)
    return float(positive.mean())


def _metrics(project: Path) -> dict:
    return json.loads((project / "reports" / "metrics.json").read_text())


def test_a_numeric_target_with_default_params_runs_end_to_end_as_regression(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", data__source="inputs/prices.csv", data__target="price")
    _regression_csv(project / "inputs" / "prices.csv")
    done = dvc(project, "repro")
    assert stages_run(done.stdout) == ALL_STAGES, done.stdout
    assert "ingest: for a regression task, model.kind: auto -> fnn, model.hidden: auto -> [64, 32], " \
           "evaluate.primary_metric: auto -> r2, clean.imbalance: auto -> none" in done.stdout
    metrics = _metrics(project)
    assert metrics["versus_baselines"]["metric"] == "r2"
    assert metrics["test"]["r2"] > metrics["baselines"]["dummy"]["r2"]  # never below predicting the mean
    assert "evaluate: test r2 " in done.stdout
    report = json.loads((project / "data" / "clean" / "report.json").read_text())
    assert report["imbalance"] == "none" and report["class_prior"] is None


def test_a_choice_against_the_inferred_task_stops_ingest_before_anything_is_written(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", data__source="inputs/prices.csv", data__target="price",
                           evaluate__primary_metric="accuracy")
    _regression_csv(project / "inputs" / "prices.csv")
    done = dvc(project, "repro", check=False)
    line = assert_one_error(done, "ingest")
    assert line.startswith(
        "ingest: error: params.yaml: evaluate.primary_metric = 'accuracy' with a regression task: expected 'auto' or "
        "one of ('mae', 'rmse', 'r2')"), line
    assert not (project / "data").exists()


def test_a_rare_class_never_costs_accuracy_and_upsampling_is_corrected_back(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", data__source="inputs/claims.csv", data__target="fraud")
    share = _rare_positive_csv(project / "inputs" / "claims.csv")
    assert 0.02 <= share <= 0.05
    dvc(project, "repro")
    default = _metrics(project)
    dummy = default["baselines"]["dummy"]["accuracy"]
    assert default["test"]["accuracy"] >= dummy, default["test"]
    assert "prior_correction" not in default  # no rebalancing by default: nothing to correct

    # upsampling moved the decision before (accuracy 0.86 against 0.97 for always "no"); corrected, it does not
    set_params(project, clean__imbalance="upsample")
    done = dvc(project, "repro")
    assert "predictions corrected back to the natural class balance" in done.stdout
    upsampled = _metrics(project)
    correction = upsampled["prior_correction"]
    assert correction["natural_prior"]["yes"] == pytest.approx(share, abs=0.01)
    assert correction["trained_prior"] == {"no": 0.5, "yes": 0.5}
    assert upsampled["test"]["accuracy"] >= dummy, upsampled["test"]
    assert correction["test_after"]["accuracy"] >= correction["test_before"]["accuracy"]
    assert correction["test_after"]["ece"] < correction["test_before"]["ece"]  # calibrated to the test rows' mix
    decision = json.loads((project / "models" / "model" / "decision.json").read_text())
    assert decision["rule"] == "prior_correction"

    # predict (through MLflow's loader) applies the same rule: exactly the predictions evaluate recorded
    test = pd.read_parquet(project / "data" / "split" / "test.parquet")
    rows = tmp_path / "rows.csv"
    test.drop(columns=["fraud"]).to_csv(rows, index=False)
    out = tmp_path / "predicted.csv"
    run(["python", "-m", "pipeline", "predict", "--model", "2", "--input", str(rows), "--output", str(out)], project)
    predicted, recorded = pd.read_csv(out), pd.read_csv(project / "reports" / "predictions.csv")
    assert predicted["prediction"].tolist() == recorded["prediction"].tolist()
    assert np.allclose(predicted[["proba_no", "proba_yes"]], recorded[["proba_no", "proba_yes"]], atol=1e-6)
