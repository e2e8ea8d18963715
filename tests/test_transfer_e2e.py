"""Transfer learning end to end (real `dvc repro`, real MLflow registry): a CNN trained on the bundled digits and
registered, then fine-tuned from that version through an alias, encoder frozen, on a user's `.npz` of 8x8 digits
relabelled odd/even; the fine-tuned version predicts, and names its parent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from pipeline.sources import IMAGE_LOADERS
from tests.project import dvc, make_project, run, set_params

pytestmark = pytest.mark.slow
DIGITS = {"data__source": "digits", "data__target": "digit", "model__kind": "cnn", "model__hidden": [],
          "train__max_epochs": 15, "train__early_stopping__patience": 15, "evaluate__baselines": ["dummy"]}
ODD_EVEN = {"data__source": "inputs/parity.npz", "data__target": "parity", "train__max_epochs": 20,
            "train__early_stopping__patience": 20}


def _write_parity(path: Path, rows: int = 240) -> np.ndarray:
    """A user's file: ``rows`` of the bundled digits, labelled odd or even (a label set the source never saw)."""
    x, y = IMAGE_LOADERS["digits"]()
    pick = np.random.default_rng(3).choice(len(x), rows, replace=False)
    np.savez(path, x=x[pick], parity=np.where(y[pick] % 2 == 1, "odd", "even"))
    return x[pick]


def _train_run(project: Path, client: MlflowClient):  # noqa: ANN202
    return client.get_run(json.loads((project / "models" / "train.json").read_text())["run_id"])


def test_a_cnn_fine_tuned_from_a_registered_version_keeps_its_encoder_and_names_its_parent(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", **DIGITS)
    dvc(project, "repro")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    source_run = _train_run(project, client)
    source = load_file(project / "models" / "model" / "weights.safetensors")
    client.set_registered_model_alias("digits-cnn", "base", "1")
    images = _write_parity(project / "inputs" / "parity.npz")

    # a mistyped alias: one line, before any training, and no run opened
    set_params(project, **ODD_EVEN, train__init_from="models:/digits-cnn@bsae", train__freeze="encoder")
    runs_before = len(client.search_runs([source_run.info.experiment_id]))
    failed = dvc(project, "repro", check=False)
    assert failed.returncode != 0
    assert ("train: error: train.init_from = 'models:/digits-cnn@bsae': model 'digits-cnn' has no alias 'bsae' in the "
            "registry; expected a registered version (see: models show)") in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert len(client.search_runs([source_run.info.experiment_id])) == runs_before
    assert client.search_experiments(filter_string="name = 'parity'") == []  # train opens a run only after resolving

    # an architecture the source does not have: refused before a run opens, naming the first difference
    set_params(project, train__init_from="models:/digits-cnn@base", model__cnn__channels=[16, 32])
    failed = dvc(project, "repro", check=False)
    assert failed.returncode != 0
    assert ("train: error: train.init_from = models:/digits-cnn/1: model.channels: source [32, 64], params.yaml "
            "[16, 32]; expected params.yaml to describe the source's architecture") in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr and "Epoch" not in failed.stdout
    assert client.search_experiments(filter_string="name = 'parity'") == []
    set_params(project, model__cnn__channels=[32, 64])

    set_params(project, **ODD_EVEN, train__init_from="models:/digits-cnn@base", train__freeze="encoder")
    done = dvc(project, "repro")
    assert "train: starting from models:/digits-cnn/1 (train.init_from = models:/digits-cnn@base; run " \
           f"{source_run.info.run_id})" in done.stdout, done.stdout
    assert "output layer head.0 made afresh (10 outputs in the source, 2 here)" in done.stdout, done.stdout
    tuned = load_file(project / "models" / "model" / "weights.safetensors")
    encoder = [k for k in source if k.startswith("features.")]
    assert encoder and [k for k in encoder if not np.array_equal(tuned[k].numpy(), source[k].numpy())] == []
    assert tuple(tuned["head.0.weight"].shape) == (2, source["head.0.weight"].shape[1])

    run_ = _train_run(project, client)
    assert run_.info.status == "FINISHED"
    parent = {"parent.name": "digits-cnn", "parent.version": "1", "parent.run_id": source_run.info.run_id}
    assert parent.items() <= run_.data.tags.items()
    assert parent.items() <= run_.data.params.items()
    assert run_.data.params["train.init_from"] == "models:/digits-cnn@base"  # as written; the version beside it
    assert [v.version for v in client.search_model_versions("name = 'parity-cnn'")] == [1]

    shown = run(["python", "-m", "pipeline", "models", "show", "1"], project).stdout
    assert "  trained    models:/parity-cnn/1 <- models:/digits-cnn/1 <- random initial weights\n" in shown, shown
    assert f"parent.run_id                      {source_run.info.run_id}" in shown, shown

    np.savez(tmp_path / "new.npz", x=images[:6])
    predicted = run(["python", "-m", "pipeline", "predict", "--model", "1", "--input", str(tmp_path / "new.npz"),
                     "--output", str(tmp_path / "out.csv")], project)
    assert "6 predictions" in predicted.stdout + predicted.stderr, predicted.stderr
    header, *rows = (tmp_path / "out.csv").read_text().splitlines()
    assert header == "prediction,proba_even,proba_odd" and len(rows) == 6
    assert {row.split(",")[0] for row in rows} <= {"even", "odd"}

    # rebuilt from the parent it was trained from, not from what the alias names now (here: nothing)
    client.delete_registered_model_alias("digits-cnn", "base")
    rebuilt = run(["python", "-m", "pipeline", "models", "reproduce", "1"], project)
    assert "reproduce: parity-cnn version 1: weights bit-identical" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
