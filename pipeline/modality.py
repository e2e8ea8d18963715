"""What differs between tables, images and sequences, known in one place, so a stage dispatches once.

A table has a row per example; images are an array per example (``<name>.npy``) beside a table holding the
target, row for row; sequences are long format, a row per (series, time step), and an example is a whole
series with one label. :func:`for_schema` picks the object for a dataset once; a stage then asks it for the
labels, the unit word, the arrays beside the table, the id columns or the padded length, rather than testing
the modality's name. Torch-free: the data stages import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.io import read_npy, write_npy
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.schema import Schema


@dataclass(frozen=True)
class Modality:
    """What one example is and how its labels and inputs are read; a table's behaviour unless overridden.

    Attributes:
        target: The label column.
        series: The series column (sequences only).
        time: The column that orders steps within a series (sequences only).
        name: ``tabular``, ``image`` or ``sequence``, as ``schema.json`` names it.
        unit: The word for a number of examples in messages and reports: ``rows``, ``images`` or ``series``.
        arrays: The inputs are arrays in ``<name>.npy`` beside each table (images), not the table's columns.
        by_series: An example is a whole series of rows: splits, resampling and class counts take whole series.
    """

    target: str
    series: str | None = None
    time: str | None = None
    name: ClassVar[str] = "tabular"
    unit: ClassVar[str] = "rows"
    arrays: ClassVar[bool] = False
    by_series: ClassVar[bool] = False

    def labels(self, frame: pd.DataFrame) -> pd.Series:
        """One label per example of ``frame``: its target column, row for row."""
        return frame[self.target]

    @property
    def id_columns(self) -> tuple[str, ...]:
        """The columns that place a row within its example, before the features in raw input (none for a table)."""
        return ()

    def with_ids(self, features: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
        """``features`` (typed feature columns of ``frame``'s rows) with ``frame``'s :attr:`id_columns` in front."""
        for column in reversed(self.id_columns):
            features.insert(0, column, frame[column])
        return features

    def read_array(self, folder: Path, name: str) -> np.ndarray | None:
        """The array ``<folder>/<name>.npy`` beside the table of that name; ``None`` when inputs are columns."""
        return None

    def read_arrays(self, folder: Path, names: Iterable[str]) -> dict[str, np.ndarray] | None:
        """:meth:`read_array` for each of ``names`` (the splits); ``None`` when inputs are columns."""
        return None

    def steps(self, train: pd.DataFrame) -> dict[str, Any] | None:
        """What ``encoder.json`` records to pad series: the series column and the longest train series (sequences
        only; ``None`` otherwise)."""
        return None

    def scaled_inputs(self, folder: Path, split: str, frame: pd.DataFrame, steps: int = 0,
                      fixed: bool = False) -> np.ndarray:
        """The network input of ``split`` as the scale stage wrote it into ``folder`` (``frame``: its table).

        Args:
            folder: The scale stage's folder.
            split: ``train``, ``val`` or ``test``.
            frame: The split's table, ``<folder>/<split>.parquet``.
            steps: Sequences: pad every series to at least this many steps.
            fixed: Sequences: refuse a series longer than ``steps`` (see :func:`pipeline.preprocess.sequence.pad`).

        Returns:
            Tables (N, F): every column but the target; images (N, C, H, W); sequences (N, T, F + 1), masked.
        """
        return frame.drop(columns=[self.target]).to_numpy(dtype="float32", copy=True)

    def align(self, labels: pd.Series, index: pd.Index) -> pd.Series:
        """``labels`` (from :meth:`labels`) in the order of predictions indexed by ``index``."""
        return labels


@dataclass(frozen=True)
class Table(Modality):
    """A row per example; the features are the table's columns."""


@dataclass(frozen=True)
class Images(Modality):
    """An image per example, in ``<name>.npy`` (N x C x H x W) beside a table that holds only the target."""

    name: ClassVar[str] = "image"
    unit: ClassVar[str] = "images"
    arrays: ClassVar[bool] = True

    def read_array(self, folder: Path, name: str) -> np.ndarray | None:
        """The images ``<folder>/<name>.npy``, row for row with the table ``<name>.parquet``."""
        return read_npy(Path(folder) / f"{name}.npy")

    def read_arrays(self, folder: Path, names: Iterable[str]) -> dict[str, np.ndarray] | None:
        """The images of each of ``names``."""
        return {name: read_npy(Path(folder) / f"{name}.npy") for name in names}

    def scaled_inputs(self, folder: Path, split: str, frame: pd.DataFrame, steps: int = 0,
                      fixed: bool = False) -> np.ndarray:
        """The scaled images ``<folder>/<split>.npy``."""
        return read_npy(Path(folder) / f"{split}.npy")


@dataclass(frozen=True)
class Sequences(Modality):
    """A series per example: long-format rows (series id, time, features), one label per series."""

    name: ClassVar[str] = "sequence"
    unit: ClassVar[str] = "series"
    by_series: ClassVar[bool] = True

    def labels(self, frame: pd.DataFrame) -> pd.Series:
        """One label per series (its first row's), indexed by series id in order of first appearance."""
        return seq.series_labels(frame, str(self.series), self.target)

    @property
    def id_columns(self) -> tuple[str, ...]:
        """The series and time columns."""
        return (str(self.series), str(self.time))

    def steps(self, train: pd.DataFrame) -> dict[str, Any] | None:
        """``{"series": column, "length": steps of the longest train series}``."""
        return {"series": self.series, "length": int(seq.lengths(train, str(self.series)).max())}

    def scaled_inputs(self, folder: Path, split: str, frame: pd.DataFrame, steps: int = 0,
                      fixed: bool = False) -> np.ndarray:
        """Every series of ``frame`` (the series column, features, target) padded to ``steps`` or its own length."""
        series = str(self.series)
        columns = [c for c in frame.columns if c not in (series, self.target)]
        return seq.pad(frame, series, columns, steps, str(Path(folder) / f"{split}.parquet"), fixed=fixed)[1]

    def align(self, labels: pd.Series, index: pd.Index) -> pd.Series:
        """The series' labels in the order of ``index`` (series ids, as predictions come)."""
        return labels.loc[index]


MODALITIES: dict[str, type[Modality]] = {kind.name: kind for kind in (Table, Images, Sequences)}


def write_arrays(folder: Path, arrays: dict[str, np.ndarray] | None) -> None:
    """Write each array as ``<folder>/<name>.npy`` (nothing for ``None``: inputs that are columns)."""
    for name, array in (arrays or {}).items():
        write_npy(Path(folder) / f"{name}.npy", array)


def for_schema(schema: Schema) -> Modality:
    """The modality of the data ``schema`` describes, with its target (and series and time columns)."""
    kind = MODALITIES[schema.modality]
    # the series columns only where they mean something: a table's ``series`` is None whatever the schema holds
    return kind(schema.target, schema.sequence_id, schema.sequence_time) if kind.by_series else kind(schema.target)
