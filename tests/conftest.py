"""Shared fixtures: a tiny hand-made frame, the default params document, and factories built on tests/factories.py
(params with overrides, clean configs, tiny already-scaled datasets built once per session)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

from tests.factories import (PARAMS_FILE, SCALED_WRITERS, MakeCleanConfig, MakeParams, MakeParamsDoc, ScaledData,
                             build_params, clean_config, params_doc)

__all__ = ["PARAMS_FILE"]  # re-exported: tests written before tests/factories.py import it from here


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
    return params_doc()


@pytest.fixture(scope="session")  # stateless: module-scoped fixtures may use it too
def make_params_doc() -> MakeParamsDoc:
    """``make_params_doc(**overrides)``: a fresh params document with sections deep-merged
    (``make_params_doc(seed=7, train={"max_epochs": 4})``), for a test that changes it further."""
    return params_doc


@pytest.fixture(scope="session")  # stateless: module-scoped fixtures may use it too
def make_params() -> MakeParams:
    """``make_params(**overrides)``: :func:`make_params_doc`'s document validated into ``pipeline.config.Params``."""
    return build_params


@pytest.fixture(scope="session")  # stateless: module-scoped fixtures may use it too
def make_clean_config() -> MakeCleanConfig:
    """``make_clean_config(**changes)``: params.yaml's ``clean`` section as a ``CleanConfig`` with ``changes`` set."""
    return clean_config


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


@pytest.fixture(scope="session")
def scaled_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledData]:
    """``scaled_data(kind, **options)``: the folder of a tiny already-scaled dataset as scale writes one (``table``,
    ``images`` or ``sequences``; options as in tests/factories.py's writers), built once per session per options.

    The folder is shared: a test must not write into it (copy it first). The session ends with an error naming
    any folder whose files changed.
    """
    built: dict[str, tuple[Path, str]] = {}

    def make(kind: str, **options: Any) -> Path:
        key = f"{kind} {json.dumps(options, sort_keys=True)}"
        if key not in built:
            folder = tmp_path_factory.mktemp(f"scaled_{kind}")
            SCALED_WRITERS[kind](folder, **options)
            built[key] = folder, _digest(folder)
        return built[key][0]

    yield make
    changed = [key for key, (folder, digest) in built.items() if _digest(folder) != digest]
    assert not changed, f"a test wrote into the shared scaled_data folder(s) {changed}; copy the folder first"
