"""The data sections of ``params.yaml``: ``data``, ``split``, ``clean`` and ``scale``.

Each knob's allowed values are declared once, as a ``Literal`` type below; code elsewhere that needs them (a fitted
step's own check, a dispatch table's test) takes them from the type with :func:`typing.get_args`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.config.base import Fraction, PositiveInt, Section

BUNDLED = ("penguins", "diabetes", "digits", "gunpoint")
BUNDLED_IMAGES = ("digits",)
BUNDLED_SEQUENCES = ("gunpoint",)
INPUTS = "inputs"  # the folder user files live in: ingest depends on it, so DVC sees every change
FILE_SUFFIXES = (".csv", ".parquet", ".npz")
IMAGE_SUFFIX = ".npz"

Task = Literal["classification", "regression"]
Modality = Literal["tabular", "image", "sequence"]  # follows from data.source and data.sequence (DataConfig.modality)
RowFill = Literal["mean", "median", "most_frequent", "constant", "knn"]  # fills that work on any table
AlongTimeFill = Literal["ffill", "interpolate"]  # sequences only: fill from the same series
NumericFill = Literal[RowFill, AlongTimeFill]
CategoricalFill = Literal["most_frequent", "constant"]
ClassOnlyImbalance = Literal["downsample", "upsample", "smote", "class_weight"]  # need classes: not for regression
Imbalance = Literal["none", ClassOnlyImbalance]  # a strategy, once 'auto' is resolved for the task
ScaleMethod = Literal["standard", "minmax", "robust", "none"]
Encoding = Literal["onehot", "ordinal"]


class SequenceConfig(Section):
    """Long-format sequences: one row per (series, time step). Both keys set, or both null for other data."""

    id: str | None = Field(min_length=1)
    time: str | None = Field(min_length=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> SequenceConfig:
        if (self.id is None) != (self.time is None):
            raise ValueError(
                f"data.sequence: id = {self.id!r}, time = {self.time!r}: expected both columns named (long-format "
                "sequences) or both null (one row per example)"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when the data are long-format sequences."""
        return self.id is not None


class DataConfig(Section):
    """What to load and what to predict."""

    source: str
    target: str = Field(min_length=1)
    task: Literal["auto", Task]
    drop: Annotated[tuple[str, ...], Field(strict=False)]  # columns that are not features (ids, free text)
    numeric: Annotated[tuple[str, ...], Field(strict=False)]  # columns declared numeric: a stray text cell is an error
    # identical rows: kept as separate examples (split row by row), kept with same-input rows in one split part,
    # or dropped at ingest (all but the first)
    duplicates: Literal["keep", "group", "drop"]
    sequence: SequenceConfig

    @model_validator(mode="after")
    def _known_source(self) -> DataConfig:
        if self.modality == "image" and self.sequence.enabled:
            raise ValueError(
                f"data.sequence.id = {self.sequence.id!r} with data.source = {self.source!r}, an image source: "
                "expected data.sequence.id and data.sequence.time to be null"
            )
        if self.source in BUNDLED_SEQUENCES and not self.sequence.enabled:
            raise ValueError(
                f"data.source = {self.source!r} holds long-format sequences: expected data.sequence.id: series and "
                "data.sequence.time: step"
            )
        if self.source in BUNDLED:
            return self
        path = PurePosixPath(self.source)
        if path.suffix not in FILE_SUFFIXES or path.parts[:1] != (INPUTS,) or ".." in path.parts or len(path.parts) < 2:
            raise ValueError(
                f"data.source = {self.source!r}: expected one of {BUNDLED} or a {'/'.join(FILE_SUFFIXES)} file under "
                f"{INPUTS}/ (for example {INPUTS}/customers.csv), so that DVC tracks it"
            )
        return self

    @property
    def name(self) -> str:
        """The dataset's name: the bundled name, or the file's stem (``inputs/churn.csv`` -> ``churn``)."""
        return self.source if self.source in BUNDLED else PurePosixPath(self.source).stem

    @property
    def modality(self) -> Modality:
        """``image`` for digits and ``.npz`` files, ``sequence`` when ``data.sequence`` names its columns."""
        if self.source in BUNDLED_IMAGES or PurePosixPath(self.source).suffix == IMAGE_SUFFIX:
            return "image"
        return "sequence" if self.sequence.enabled else "tabular"


class SplitConfig(Section):
    """Train/validation/test fractions: seeded and stratified, or ordered in time."""

    val: Fraction
    test: Fraction
    method: Literal["random", "time"]
    time_column: str | None = Field(min_length=1)  # orders rows for method 'time' (sequences: data.sequence.time)

    @model_validator(mode="after")
    def _leaves_train_rows(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(
                f"split.val + split.test = {self.val + self.test:g}: expected a sum below 1 so rows remain for train"
            )
        return self


class CleanConfig(Section):
    """Missing values and class imbalance, learned from the train split only."""

    numeric: NumericFill
    categorical: CategoricalFill
    fill_value: float
    fill_category: str = Field(min_length=1)
    max_missing: Annotated[float, Field(gt=0.0, le=1.0)]
    drop_rows: bool
    indicators: bool
    knn_neighbors: PositiveInt
    knn_reference_rows: PositiveInt
    imbalance: Literal["auto", Imbalance]  # auto: by task
    prior_correction: bool  # after resampling or class weights, predict at the natural class balance
    smote_neighbors: PositiveInt


class ScaleConfig(Section):
    """Feature scaling and categorical encoding, fitted on the train split only."""

    method: ScaleMethod
    encoding: Encoding
