"""Shared fixtures: a tiny hand-made frame and the default params document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

PARAMS_FILE = Path(__file__).parents[1] / "params.yaml"


@pytest.fixture
def tiny_frame() -> pd.DataFrame:
    """Eight penguin-like rows: a numeric and a categorical feature, and a three-class target."""
    return pd.DataFrame(
        {
            "bill": [39.1, 39.5, 40.3, 36.7, 46.5, 50.0, 45.4, 48.7],
            "island": ["Torgersen", "Biscoe", "Torgersen", "Dream", "Dream", "Biscoe", "Biscoe", "Dream"],
            "species": ["Adelie", "Adelie", "Adelie", "Adelie", "Gentoo", "Gentoo", "Chinstrap", "Chinstrap"],
        }
    )


@pytest.fixture
def default_params() -> dict[str, Any]:
    """The repository's params.yaml as plain Python objects (a fresh copy per test)."""
    return yaml.safe_load(PARAMS_FILE.read_text())
