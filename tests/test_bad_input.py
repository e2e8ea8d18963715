"""Bad params and bad data through the real `dvc repro`: non-zero exit, one clear line, no outputs written."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.asserts import assert_one_error
from tests.project import BIN, call, dvc, env, make_project, run


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train__lr": -1}, "params.yaml: train.lr = -1: expected greater than 0"),
        ({"model__activation": "swish"}, "model.activation = 'swish': expected 'relu', 'leaky_relu', 'elu', 'gelu', 'sigmoid' or 'tanh'"),
        ({"split__val": 0.5, "split__test": 0.5}, "split.val + split.test = 1: expected a sum below 1"),
        ({"data__target": "beak"}, "data.target = 'beak': column not found in penguins"),
    ],
    ids=["negative-lr", "unknown-activation", "split-sums-to-one", "missing-target-column"],
)
def test_repro_stops_with_one_clear_line_and_writes_nothing(tmp_path: Path, overrides: dict, expected: str) -> None:
    project = make_project(tmp_path, **overrides)
    done = dvc(project, "repro", check=False)
    line = assert_one_error(done, "ingest")
    assert expected in line, line
    assert not (project / "data" / "raw").exists()
    assert not list(project.glob("data/.raw.tmp-*"))
    assert not (project / "dvc.lock").exists()


def test_predict_without_a_store_names_what_is_missing(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    rows = project / "rows.csv"
    rows.write_text("island,bill_length_mm\nDream,40\n")
    done = run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows), "--output", "p.csv"],
               project, check=False)
    assert done.returncode == 1
    assert "mlflow.db: no MLflow store here" in done.stderr
    assert not (project / "p.csv").exists()
    missing = run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", "nope.csv", "--output", "p.csv"],
                  project, check=False)
    assert missing.returncode == 1 and "nope.csv: file not found" in missing.stderr


@pytest.mark.slow
def test_gpu_requested_without_cuda_fails_before_any_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, train__accelerator="gpu")
    # no CUDA device for the stages, on any machine: CUDA hides every GPU from a process given none to see
    done = call([BIN / "dvc", "repro"], project, {**env(), "CUDA_VISIBLE_DEVICES": ""}, check=False)
    line = assert_one_error(done, "train")
    assert line.startswith("train: error: train.accelerator = 'gpu': expected a CUDA device, found none"), line
    assert (project / "data" / "scaled").is_dir()  # the data stages ran and were kept
    assert not (project / "models").exists()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()]) == []
