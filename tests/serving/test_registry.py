"""The registry helpers that need no store: the loader's own check of a model's pinned requirements."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from mlflow.models import Model

from pipeline.serving.registry import check_requirements, requirements

HERE = ".".join(map(str, sys.version_info[:3]))


def _model(folder: Path, pins: list[str], python: str = HERE) -> Model:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_text("\n".join(pins))  # MLflow writes no final newline
    return Model(flavors={"python_function": {"python_version": python}})


def test_a_model_logged_here_matches_this_environment(tmp_path: Path) -> None:
    assert check_requirements(tmp_path, _model(tmp_path, requirements())) == []


def test_each_pin_this_environment_does_not_meet_is_named_with_both_versions(tmp_path: Path) -> None:
    pins = [f"torch=={version('torch')}", "pandas==0.0.1", "no-such-package-here==1.0", "numpy>=1"]
    found = check_requirements(tmp_path, _model(tmp_path, pins, python="3.9.18"))
    assert found == [
        f"logged with pandas==0.0.1, this environment has {version('pandas')}",
        "logged with no-such-package-here==1.0, this environment has no no-such-package-here",
        f"logged with Python 3.9.18, this is Python {'.'.join(HERE.split('.')[:2])}",
    ]


def test_a_model_without_requirements_or_python_version_is_not_flagged(tmp_path: Path) -> None:
    assert check_requirements(tmp_path, Model(flavors={})) == []
