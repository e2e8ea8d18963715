"""The diagnosis of a real, deliberately unhealthy training: a deep sigmoid net trained by plain SGD.

Six sigmoid layers shrink the gradient at every layer, so the first layers barely learn and the net stays at
the majority class: evaluate must say so, with the layer names, and name the knobs that fix it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.project import dvc, make_project

pytestmark = pytest.mark.slow


def test_a_deep_sigmoid_net_is_diagnosed_with_vanishing_gradients_and_underfitting(tmp_path: Path) -> None:
    root = make_project(tmp_path, train__max_epochs=20, model__hidden=[64] * 6, model__activation="sigmoid",
                        train__optimizer="sgd", train__lr=0.01)
    done = dvc(root, "repro")
    assert "- vanishing_gradients:" in done.stdout and "- underfitting:" in done.stdout, done.stdout
    metrics = json.loads((root / "reports/metrics.json").read_text())
    found = {f["kind"]: f for f in metrics["diagnosis"]}
    assert set(found) >= {"vanishing_gradients", "underfitting"}
    assert "layers.0.weight" in found["vanishing_gradients"]["summary"]  # the first layer, by name
    assert {"model.activation", "model.init", "model.norm"} <= set(found["vanishing_gradients"]["knobs"])
    assert (root / "reports/diagnosis.txt").read_text().count("try: ") == len(found)
    run = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(metrics["mlflow_run_id"])
    assert set(run.data.tags["diagnosis"].split(", ")) == set(found)
