"""What the data stages share: split names, reading and writing the three splits, command-line parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.config import DEFAULT_PARAMS
from pipeline.io import read_parquet, read_state, write_parquet
from pipeline.preprocess.schema import Schema

SPLITS = ("train", "val", "test")


def stage_args(description: str, *paths: str) -> argparse.Namespace:
    """Parse ``--params`` and the named path options ``dvc.yaml`` passes to a stage."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    for name in paths:
        parser.add_argument(f"--{name}", type=Path, required=True)
    return parser.parse_args()


def read_splits(folder: Path) -> dict[str, pd.DataFrame]:
    """Read ``train``, ``val`` and ``test`` Parquet files from a stage's output folder."""
    return {name: read_parquet(Path(folder) / f"{name}.parquet") for name in SPLITS}


def write_splits(folder: Path, splits: dict[str, pd.DataFrame]) -> None:
    """Write the three splits as Parquet into ``folder``."""
    for name in SPLITS:
        write_parquet(Path(folder) / f"{name}.parquet", splits[name])


def read_schema(raw_dir: Path) -> Schema:
    """Read the schema ingest wrote."""
    return read_state(Path(raw_dir) / "schema.json", Schema.from_dict)
