"""Tiny real projects for the tuning tests: a data file under inputs/, a params.yaml, and the ingest and split
stages' mains run on them in-process, so data/raw and data/split are exactly what the pipeline writes."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.config import Params, parse_params
from pipeline.stages import clean, ingest, scale, split
from tests.factories import params_doc

ROOT = Path(__file__).resolve().parents[2]  # the repository: its dvc.yaml, and the cwd of child processes
STAGES: dict[str, Callable[[], None]] = {"ingest": ingest.main, "split": split.main, "clean": clean.main,
                                         "scale": scale.main}
ARGS = {"ingest": ["--out", "data/raw"], "split": ["--raw", "data/raw", "--out", "data/split"],
        "clean": ["--raw", "data/raw", "--split", "data/split", "--out", "data/clean"],
        "scale": ["--raw", "data/raw", "--clean", "data/clean", "--out", "data/scaled"]}


def run_stage(root: Path, name: str) -> str:
    """Run stage ``name``'s main in ``root`` with dvc.yaml's paths and ``root/params.yaml``; returns its stdout."""
    argv, out = sys.argv, io.StringIO()
    sys.argv = [f"pipeline.stages.{name}", "--params", "params.yaml", *ARGS[name]]
    try:
        with contextlib.chdir(root), contextlib.redirect_stdout(out):
            STAGES[name]()
    finally:
        sys.argv = argv
    return out.getvalue()


def params_of(root: Path) -> Params:
    """``root/params.yaml``, validated."""
    return parse_params(yaml.safe_load((root / "params.yaml").read_text()))


def write_params(root: Path, **overrides: Any) -> Params:
    """Write the repository's params.yaml with ``overrides`` deep-merged into ``root/params.yaml``."""
    doc = params_doc(**overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return parse_params(doc)


def project(root: Path, dataset: pd.DataFrame | dict[str, np.ndarray], target: str, **overrides: Any) -> Params:
    """A project in ``root`` holding ``dataset`` (a table as inputs/data.csv, or images ``{"x", "y"}`` as
    inputs/data.npz), its params (``data.source`` and ``data.target`` set, then ``overrides``), after ingest
    and split.

    Returns:
        The params written.
    """
    (root / "inputs").mkdir(parents=True)
    if isinstance(dataset, pd.DataFrame):
        source = "inputs/data.csv"
        dataset.to_csv(root / source, index=False)
    else:
        source = "inputs/data.npz"
        np.savez(root / source, **dataset)
    data_section = {"source": source, "target": target, **overrides.pop("data", {})}
    params = write_params(root, data=data_section, **overrides)
    run_stage(root, "ingest")
    run_stage(root, "split")
    return params


def table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """``n`` rows: an ``id`` (0..n-1), a numeric ``bill`` with gaps, a categorical ``island``, a time ``day``
    (a shuffled 0..n-1) and three classes in ``species`` in shares 1/2, 1/3, 1/6."""
    rng = np.random.default_rng(seed)
    species = np.array(["Adelie"] * (n // 2) + ["Gentoo"] * (n // 3) + ["Chinstrap"] * (n - n // 2 - n // 3))
    bill = rng.normal(45, 5, size=n).round(1)
    bill[rng.choice(n, size=n // 10, replace=False)] = np.nan
    return pd.DataFrame({"id": np.arange(n), "bill": bill, "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
                         "day": rng.permutation(n), "species": rng.permutation(species)})


def sequences(n: int = 24, seed: int = 0) -> pd.DataFrame:
    """``n`` series ``s<i>`` of 4-7 steps in long format (``series``, ``step``, ``x``), label ``y`` = ``i % 3 == 0``
    (a third of the series are positive); series ``i`` starts at step ``i * 10`` (so start times order them)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        steps = int(rng.integers(4, 8))
        parts.append(pd.DataFrame({"series": f"s{i}", "step": i * 10 + np.arange(steps),
                                   "x": rng.normal(size=steps).round(3), "y": int(i % 3 == 0)}))
    return pd.concat(parts, ignore_index=True)


def images(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` 4x4 grey images whose first pixel is the image's number, two classes alternating."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, 4)).astype("float32")
    x[:, 0, 0] = np.arange(n)
    return {"x": x, "y": np.arange(n) % 2}
