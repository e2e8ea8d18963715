"""Only train imports Lightning: evaluate and `pipeline predict` run the network in plain torch.

Lightning costs seconds to import, and inference has no use for it. The slow test records every module a real
evaluate run and a real predict run loaded, in their own processes, on a small trained project; the fast one
checks what importing their code pulls in, so a module-level import is caught without a repro.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.project import ROOT, dvc, make_project, run

LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")

# Runs a module as `python -m` would, and at exit (a normal end or sys.exit) writes the name of every module
# the process loaded, one a line, to the file named first.
RECORD = """\
import atexit, runpy, sys
out, module = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def lightning_modules(modules: set[str]) -> list[str]:
    """The Lightning packages and their submodules among ``modules``."""
    return sorted(m for m in modules if m.split(".")[0] in LIGHTNING)


def recorded(project: Path, module: str, args: list[str], out: Path) -> set[str]:
    """Run ``python -m module args`` in ``project``; the modules its process had loaded when it exited."""
    run([sys.executable, "-c", RECORD, str(out), module, *args], project)
    return set(out.read_text().split())


def test_lightning_modules_are_told_from_their_namesakes() -> None:
    found = {"lightning", "lightning.fabric.utilities", "pytorch_lightning.core", "lightning_fabric", "lightningx",
             "torch", "mlflow.pytorch"}
    assert lightning_modules(found) == ["lightning", "lightning.fabric.utilities", "lightning_fabric",
                                        "pytorch_lightning.core"]


def test_evaluate_and_serving_code_imports_no_lightning() -> None:
    code = (
        "import sys\n"
        "import pipeline.stages.evaluate, pipeline.serving.registry, pipeline.bundle, pipeline.training.arrays\n"
        "import pipeline.evaluation.scores, pipeline.evaluation.metrics, pipeline.__main__\n"
        "print(' '.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = set(done.stdout.split())
    assert "pipeline.stages.evaluate" in modules
    assert lightning_modules(modules) == []


@pytest.mark.slow
def test_evaluate_and_predict_processes_never_import_lightning(tmp_path: Path) -> None:
    project = make_project(tmp_path, train__max_epochs=3)
    dvc(project, "repro", "train")  # up to train: evaluate runs below, once, as dvc.yaml says
    command = shlex.split(yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["evaluate"]["cmd"])
    assert command[:3] == ["python", "-m", "pipeline.stages.evaluate"]
    evaluate = recorded(project, command[2], command[3:], tmp_path / "evaluate.txt")
    assert (project / "reports" / "metrics.json").is_file() and (project / "reports" / "model.json").is_file()
    predict = recorded(project, "pipeline", ["predict", "--model", "1", "--input", "data/split/test.parquet",
                                             "--output", "preds.csv"], tmp_path / "predict.txt")
    assert (project / "preds.csv").read_text().startswith("prediction,")
    for name, modules in (("evaluate", evaluate), ("predict", predict)):
        assert {"torch", "mlflow", "pipeline.bundle"} <= modules, name  # the recording saw the real work
        assert lightning_modules(modules) == [], f"{name} imported {lightning_modules(modules)[:5]}"
