"""Builders the tests share: params documents with overrides, clean configs, and tiny already-scaled datasets.

tests/conftest.py hands these out as factory fixtures (``make_params``, ``make_params_doc``, ``make_clean_config``,
``scaled_data``); a module-level helper that no fixture reaches (a parametrize list, a helper many tests call) may
import them from here directly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from pipeline.config import CleanConfig, Params, parse_params
from pipeline.io import write_json
from pipeline.preprocess.encoders import Encoders

PARAMS_FILE = Path(__file__).parents[1] / "params.yaml"
# read once: every builder below starts from a deep copy, so no test sees another's changes
_DEFAULTS: dict[str, Any] = yaml.safe_load(PARAMS_FILE.read_text())
TABLE_FEATURES = ["a", "b", "c", "d"]
# the factory fixtures' types, for test signatures
MakeParams = Callable[..., Params]
MakeParamsDoc = Callable[..., dict[str, Any]]
MakeCleanConfig = Callable[..., CleanConfig]
ScaledData = Callable[..., Path]
SEQUENCE_LENGTHS = {"train": [5, 8, 12, 6, 9, 7, 10, 11, 5, 12, 8, 6], "val": [6, 20, 9, 7], "test": [25, 5, 8, 11]}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it: a dict merges into the dict it meets, anything else replaces.

    Args:
        base: The document to start from (not changed).
        overrides: Keys to set; nested dicts set only the keys they name.

    Returns:
        A new document.
    """
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def params_doc(**overrides: Any) -> dict[str, Any]:
    """The repository's params.yaml as plain Python objects, a fresh copy with ``overrides`` deep-merged.

    Args:
        **overrides: Top-level keys (``seed=7``) or sections (``train={"max_epochs": 4}``) to set.

    Returns:
        The document, free for the caller to change.
    """
    return merged(_DEFAULTS, overrides)


def build_params(**overrides: Any) -> Params:
    """:func:`params_doc` ``(**overrides)``, validated as the stages validate params.yaml."""
    return parse_params(params_doc(**overrides))


def clean_config(**changes: Any) -> CleanConfig:
    """params.yaml's ``clean`` section as a validated config, with ``changes`` set (note its ``imbalance: auto``)."""
    return CleanConfig(**{**_DEFAULTS["clean"], **changes})


def write_table(folder: Path, train: int = 48, val: int = 16, seed: int = 0) -> None:
    """An already-scaled three-class table: features a-d ~ N(0, 1); the class counts ``a + b > 0`` and ``c > 1``.

    Args:
        folder: Where train/val parquet files and a passthrough ``encoder.json`` go.
        train: Train rows.
        val: Val rows (drawn after train from the same generator).
        seed: The generator's seed.
    """
    rng = np.random.default_rng(seed)
    for name, n in (("train", train), ("val", val)):
        x = rng.normal(size=(n, 4)).astype("float32")
        frame = pd.DataFrame(x, columns=TABLE_FEATURES)
        frame["species"] = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    write_json(folder / "encoder.json", Encoders.passthrough(TABLE_FEATURES, [0, 1, 2]).to_dict())


def write_images(folder: Path, train: int = 32, val: int = 12, side: int = 6, seed: int = 0,
                 pattern: str = "halves") -> None:
    """Already-scaled two-class 1 x side x side images, labels in a ``digit`` column.

    Args:
        folder: Where train/val ``.npy`` and parquet files and a passthrough ``encoder.json`` go.
        train: Train images.
        val: Val images.
        side: Height and width.
        seed: The generator's seed.
        pattern: ``halves``: noise with the left (class 0) or right (class 1) half brightened by 2;
            ``top``: pure noise, the class is whether the top half's mean is positive.
    """
    rng = np.random.default_rng(seed)
    half = side // 2
    for name, n in (("train", train), ("val", val)):
        if pattern == "halves":
            y = rng.integers(0, 2, size=n)
            x = rng.normal(size=(n, 1, side, side)).astype("float32")
            for i, label in enumerate(y):
                x[i, 0, :, :half] += 2.0 if label == 0 else 0.0
                x[i, 0, :, half:] += 2.0 if label == 1 else 0.0
        elif pattern == "top":
            x = rng.normal(size=(n, 1, side, side)).astype("float32")
            y = x[:, 0, :half].mean(axis=(1, 2)) > 0
        else:
            raise ValueError(f"pattern = {pattern!r}: expected 'halves' or 'top'")
        np.save(folder / f"{name}.npy", x)
        pd.DataFrame({"digit": y.astype("int64")}).to_parquet(folder / f"{name}.parquet", index=False)
    write_json(folder / "encoder.json", Encoders.passthrough((1, side, side), [0, 1]).to_dict())


def write_sequences(folder: Path, lengths: dict[str, list[int]] | None = None, seed: int = 0) -> None:
    """Already-scaled long-format sequences of features a and b, series in ``sid``, label ``y``: series i has
    label ``i % 2`` and features ~ N(+1 or -1, 1).

    Args:
        folder: Where train/val/test parquet files and an ``encoder.json`` (series length: train's longest) go.
        lengths: Steps per series, per split (default :data:`SEQUENCE_LENGTHS`).
        seed: The generator's seed.
    """
    lengths = lengths or SEQUENCE_LENGTHS
    rng = np.random.default_rng(seed)
    for name, sizes in lengths.items():
        parts = []
        for i, n in enumerate(sizes):
            label = i % 2
            values = rng.normal(loc=1.0 if label else -1.0, size=(n, 2)).astype("float32")
            parts.append(pd.DataFrame({"sid": f"{name}{i}", "a": values[:, 0], "b": values[:, 1], "y": label}))
        pd.concat(parts, ignore_index=True).to_parquet(folder / f"{name}.parquet", index=False)
    plain = Encoders.passthrough(["a", "b"], [0, 1])
    encoders = Encoders(plain.features, plain.target, {"series": "sid", "length": max(lengths["train"])})
    write_json(folder / "encoder.json", encoders.to_dict())


SCALED_WRITERS: dict[str, Callable[..., None]] = {
    "table": write_table, "images": write_images, "sequences": write_sequences,
}
