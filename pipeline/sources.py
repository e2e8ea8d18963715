"""Loading a dataset: the bundled ones (read offline from installed packages) or the user's CSV / Parquet file.

Every failure names the file and says what was expected.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipeline.config import BUNDLED
from pipeline.errors import PipelineError


def _penguins() -> pd.DataFrame:
    """The Palmer penguins (344 birds, 3 species), from the CSV the palmerpenguins package ships."""
    from palmerpenguins import load_penguins

    return load_penguins()


def _diabetes() -> pd.DataFrame:
    """scikit-learn's diabetes data in its original units (442 patients; target: progression after a year).

    Read straight from the files scikit-learn ships, without importing scikit-learn (over a second).
    """
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("data.source = 'diabetes': expected scikit-learn to be installed (it ships the data)")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    frame = pd.read_csv(folder / "diabetes_data_raw.csv.gz", sep=" ", header=None, names=names)
    frame["progression"] = pd.read_csv(folder / "diabetes_target.csv.gz", header=None)[0].to_numpy()
    return frame


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {"penguins": _penguins, "diabetes": _diabetes}
assert set(LOADERS) == set(BUNDLED)


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        header = next(csv.reader(stream), None)
    if not header:
        raise PipelineError(f"{path}: expected a header row and data rows, got an empty file")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would silently rename them 'x.1'
        raise PipelineError(f"{path}: duplicate column name(s) {repeated}; expected each column once")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path}: expected a readable CSV file ({' '.join(str(exc).split())})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise PipelineError(f"{path}: expected a Parquet file, got an unreadable one ({exc})") from None
    repeated = sorted({name for name in table.column_names if table.column_names.count(name) > 1})
    if repeated:
        raise PipelineError(f"{path}: duplicate column name(s) {repeated}; expected each column once")
    return table.to_pandas()


def load(source: str, root: Path = Path(".")) -> pd.DataFrame:
    """Load a bundled dataset by name, or a ``.csv`` / ``.parquet`` file by its path under ``root``.

    Raises:
        PipelineError: If the file is missing, empty, holds no data rows, cannot be parsed, or repeats a
            column name.
    """
    if source in LOADERS:
        return LOADERS[source]()
    path = Path(root) / source
    if not path.is_file():
        raise PipelineError(f"data.source = {source!r}: file not found at {path}")
    if path.stat().st_size == 0:
        raise PipelineError(f"{source}: expected a header row and data rows, got an empty file")
    frame = _read_csv(path) if path.suffix == ".csv" else _read_parquet(path)
    if frame.empty:
        raise PipelineError(f"{source}: expected at least one data row, got only the header")
    return frame
