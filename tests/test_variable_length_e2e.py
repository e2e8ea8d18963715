"""End to end: multivariate sequences whose val and test series are longer than every train series.

A recurrent net trains, evaluates and registers, and `predict` takes a series longer than anything it has seen;
the feed-forward net, which takes a fixed number of steps, is refused at train with a message naming the nets
that take any length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.asserts import assert_one_error
from tests.project import dvc, make_project, run, stages_run

pytestmark = pytest.mark.slow
SERIES, LATE, TRAIN_MAX = 60, 21, 24  # series in all; in val and test (35% of 60); the longest a train series may be


def _sequences(seed: int = 0) -> pd.DataFrame:
    """Long-format rows of two features, lengths 7..29, two classes told apart by the mean and the frequency.

    The split is by start time (``split.method: time``) and each series starts after the one before, so the
    last series are val and test: those may be up to 29 steps long, the train series at most 24.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(SERIES):
        late = i >= SERIES - LATE  # a val or test series
        n = int(rng.integers(7, 30 if late else TRAIN_MAX + 1))
        n = 29 if i in (SERIES - 1, SERIES - 15) else n  # one in test, one in val, whatever the draw
        label = ("calm", "busy")[i % 2]
        t = np.arange(n)
        wave = np.sin(t * (0.9 if label == "busy" else 0.3))
        parts.append(pd.DataFrame({
            "series": f"s{i:02d}", "step": i * 100 + t,  # every series starts after the one before
            "f1": (0.6 if label == "busy" else -0.6) + rng.normal(scale=0.5, size=n),
            "f2": wave + rng.normal(scale=0.3, size=n), "label": label,
        }))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)  # rows in any order


def _lengths(project: Path) -> dict[str, pd.Series]:
    return {name: pd.read_parquet(project / "data" / "split" / f"{name}.parquet").groupby("series").size()
            for name in ("train", "val", "test")}


def _project(tmp_path: Path, kind: str) -> tuple[Path, pd.DataFrame]:
    project = make_project(
        tmp_path, data__source="inputs/waves.csv", data__target="label", data__sequence__id="series",
        data__sequence__time="step", split__method="time", model__kind=kind, model__hidden=[],
        model__rnn__hidden_size=16, model__cnn__channels=[8, 8], train__max_epochs=5,
        train__early_stopping__patience=5,
    )
    (project / "inputs").mkdir(exist_ok=True)
    frame = _sequences()
    frame.to_csv(project / "inputs" / "waves.csv", index=False)
    return project, frame


@pytest.mark.parametrize("kind", ["rnn", "cnn"])
def test_nets_of_any_length_take_val_test_and_predict_series_longer_than_any_train_series(
    tmp_path: Path, kind: str
) -> None:
    project, frame = _project(tmp_path, kind)
    done = dvc(project, "repro")  # evaluate's skew guard and MLflow reload check passed, or repro would fail
    assert stages_run(done.stdout) == {"ingest", "split", "clean", "scale", "train", "evaluate"}, done.stdout
    lengths = _lengths(project)
    longest = int(lengths["train"].max())
    assert longest <= TRAIN_MAX and lengths["val"].max() > longest and lengths["test"].max() > longest, lengths
    assert json.loads((project / "data" / "scaled" / "encoder.json").read_text())["sequence"]["length"] == longest
    assert json.loads((project / "models" / "model" / "net.json").read_text())["kind"] == kind
    recorded = pd.read_csv(project / "reports" / "predictions.csv")
    assert sorted(recorded["series"]) == sorted(lengths["test"].index)  # every test series, the long ones too

    # predict: the test series beside one longer than any series there has been, so the batch is padded further
    test_rows = frame.loc[frame["series"].isin(lengths["test"].index)].drop(columns=["label"])
    new = pd.DataFrame({"series": "new", "step": np.arange(40), "f1": 0.6, "f2": np.sin(np.arange(40) * 0.9)})
    rows = tmp_path / "rows.csv"
    pd.concat([test_rows, new]).to_csv(rows, index=False)
    out = tmp_path / "predicted.csv"
    run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(rows), "--output", str(out)], project)
    predicted = pd.read_csv(out).set_index("series")
    assert predicted.loc["new", "prediction"] in ("calm", "busy")
    # the recorded series, padded to 29 steps at evaluate and to 40 here, get the same predictions
    recorded = recorded.set_index("series").loc[predicted.index.drop("new")]
    assert predicted.drop(index="new")["prediction"].tolist() == recorded["prediction"].tolist()
    proba = ["proba_busy", "proba_calm"]
    assert np.allclose(predicted.drop(index="new")[proba].to_numpy(), recorded[proba].to_numpy(), rtol=0, atol=1e-6)


def test_fnn_is_refused_at_train_naming_the_nets_that_take_any_length(tmp_path: Path) -> None:
    project, _ = _project(tmp_path, "fnn")
    done = dvc(project, "repro", check=False)
    line = assert_one_error(done, "train")
    longest = int(_lengths(project)["train"].max())
    assert line.startswith("train: error: data/scaled/val.parquet: series "), line
    assert f"steps; expected at most {longest}, the longest series the network was trained on" in line, line
    assert "model.kind 'fnn' takes a fixed number of steps (model.kind: rnn or cnn" in line, line
    assert not (project / "models").exists()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")  # refused before any run was opened
    assert client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()]) == []
