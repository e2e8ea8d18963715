"""dvc.yaml declares what each stage reads, so DVC's caching can be trusted."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.config import flatten, load_params

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
DATA_STAGES = ("ingest", "split", "clean", "scale")


def _has_code(path: Path) -> bool:
    """Package ``__init__`` files holding only a docstring and constants change no stage's behaviour."""
    body = ast.parse(path.read_text()).body
    return any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in body)


def _module_files(name: str) -> list[Path]:
    """The file(s) a dotted ``pipeline...`` name may refer to."""
    base = ROOT / Path(*name.split("."))
    return [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]


def _pipeline_imports(module: Path) -> set[Path]:
    """Files of the ``pipeline`` package that ``module`` imports, followed transitively (lazy imports too)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("pipeline")]
            for name in names:
                todo.extend(_module_files(name))
    return {p for p in seen if p.name != "__init__.py" or _has_code(p)}


def test_every_stage_lists_the_code_it_imports() -> None:
    for name, stage in STAGES.items():
        module = ROOT / "pipeline" / "stages" / f"{name}.py"
        declared = {ROOT / d for d in stage["deps"]}
        missing = sorted(str(p.relative_to(ROOT)) for p in _pipeline_imports(module) - declared)
        assert not missing, f"stage {name} imports but does not list: {missing}"


def test_every_param_is_read_by_some_stage() -> None:
    declared = [p for stage in STAGES.values() for p in stage.get("params", [])]
    for key in flatten(load_params(ROOT / "params.yaml")):
        assert any(key == d or key.startswith(d + ".") for d in declared), f"{key} is declared by no stage"


def test_stage_params_exist_in_params_yaml() -> None:
    keys = flatten(load_params(ROOT / "params.yaml"))
    for name, stage in STAGES.items():
        for param in stage.get("params", []):
            assert any(k == param or k.startswith(param + ".") for k in keys), f"stage {name}: unknown param {param}"


def test_stage_commands_pass_their_declared_paths() -> None:
    for name, stage in STAGES.items():
        cmd = " ".join(stage["cmd"].split())
        assert f"pipeline.stages.{name} " in cmd
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        for out in outs:
            top = out.split("/")[0] + "/" + out.split("/")[1] if out.count("/") else out
            assert re.search(rf"\b{re.escape(top)}\b", cmd) or out.startswith("reports/"), (name, out)


def test_data_stages_import_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import pipeline.stages.{s}\n" for s in DATA_STAGES)
        + "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'sklearn') if m in sys.modules]\n"
        + "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"data stages import {done.stdout.strip()}"
