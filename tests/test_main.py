"""`python -m pipeline summary`: evaluate's reports printed, and reports of another shape refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import ROOT, env

METRICS = {"test": {"accuracy": 0.98551, "macro_f1": 0.9812,
                    "per_class": {"Adelie": {"precision": 1.0, "recall": 0.9667, "support": 30}}}}
MODEL = {"name": "penguins-fnn", "version": "3", "uri": "models:/penguins-fnn/3", "run_id": "abc123",
         "modality": "tabular"}


def _summary(folder: Path, metrics: object, model: object) -> subprocess.CompletedProcess[str]:
    reports = folder / "reports"
    reports.mkdir()
    (reports / "metrics.json").write_text(json.dumps(metrics))
    (reports / "model.json").write_text(json.dumps(model))
    return subprocess.run([sys.executable, "-m", "pipeline", "summary"], cwd=folder, capture_output=True, text=True,
                          check=False, env={**env(), "PYTHONPATH": str(ROOT)})


def test_summary_prints_the_test_metrics_and_how_to_predict(tmp_path: Path) -> None:
    done = _summary(tmp_path, METRICS, MODEL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  accuracy  0.9855" in lines and "  macro_f1  0.9812" in lines
    assert "  Adelie       precision 1.0000  recall 0.9667  (n=30)" in lines
    assert "Registered model: penguins-fnn version 3  (models:/penguins-fnn/3, run abc123)" in lines
    assert any(line.startswith("  predict:  .venv/bin/python -m pipeline predict --model 3 --input rows.csv")
               for line in lines), lines


@pytest.mark.parametrize(("metrics", "model", "file", "why"), [
    ({"val": {}}, MODEL, "metrics.json", "(KeyError: no key 'test')"),
    ({"test": {"accuracy": "high"}}, MODEL, "metrics.json",
     "(ValueError: Unknown format code 'f' for object of type 'str')"),
    (METRICS, {"name": "x"}, "model.json", "(KeyError: no key 'version')"),
], ids=["no test metrics", "text for a number", "no version"])
def test_summary_refuses_reports_of_another_shape_in_one_line(tmp_path: Path, metrics: object, model: object,
                                                              file: str, why: str) -> None:
    done = _summary(tmp_path, metrics, model)
    assert done.returncode == 1
    assert done.stdout == ""  # nothing printed before the refusal
    assert done.stderr == (f"pipeline: error: reports/{file}: expected the content the pipeline writes there, "
                           f"got content it cannot use {why}\n")
