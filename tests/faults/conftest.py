"""The project most fault tests start from: penguins with a long training, run up to scale once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.helpers import TRAIN
from tests.project import dvc, make_project


@pytest.fixture(scope="session")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Penguins run up to scale (ingest, split, clean, scale locked); tests work on copies of it."""
    project = make_project(tmp_path_factory.mktemp("scaled"), **TRAIN)
    dvc(project, "repro", "scale")
    return project
