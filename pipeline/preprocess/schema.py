"""The feature schema ingest records: which columns are numeric, categorical or dates, and which to drop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from pipeline.config.data import Modality, Task  # declared once, with the params schema
from pipeline.errors import PipelineError

Kind = Literal["numeric", "categorical", "date"]
MAX_CLASSES = 20  # a numeric target with more distinct values than this is taken for a quantity to regress
ISO_DATE = r"^\d{4}-\d{2}-\d{2}"  # text counts as a date only in ISO form, so "2007" stays a number or a category
EPOCH = pd.Timestamp("1970-01-01")
NEAR_UNIQUE = 0.9  # a text column with distinct values on this share of its rows identifies rows, it is no category
MIN_IDENTIFIER_VALUES = 20  # ...and has at least this many of them (a 5-row table's names are still categories)


def detect(series: pd.Series) -> Kind | Literal["identifier"]:
    """The kind of a column, or ``identifier`` for near-unique text (ids, names, free text) to leave out.

    Dates are datetime columns or text whose non-missing values are ISO dates (``2024-03-01``, with or
    without a time); they become numbers (days since 1970-01-01).
    """
    if is_datetime64_any_dtype(series):
        return "date"
    if column_kind(series) == "numeric":
        return "numeric"
    values = as_category(series).dropna()
    if len(values) and values.str.match(ISO_DATE).mean() >= 0.95:
        return "date"
    distinct = values.nunique()
    if distinct >= MIN_IDENTIFIER_VALUES and distinct >= NEAR_UNIQUE * len(values):
        return "identifier"
    return "categorical"


def as_category(column: pd.Series) -> pd.Series:
    """Categorical values in the one form every step compares: text, with missing and blank cells missing.

    Training data (a boolean column, say) and rows read back from a CSV must give the same categories, so
    ``True`` and ``"True"`` are the same value and an empty cell is missing, not a category of its own.
    """
    text = column if column.dtype == "str" else column.astype("str")  # pandas 3: missing stays missing (NaN)
    blank = text.str.strip() == ""
    return text.where(~blank) if blank.any() else text


def infer_task(target: pd.Series) -> tuple[Task, str]:
    """Classification or regression from the target's values, with the reason in words (ingest prints it)."""
    values = target.dropna()
    if column_kind(values) != "numeric":
        return "classification", f"the target holds {values.dtype} labels"
    distinct = values.nunique()
    whole = bool((values == values.round()).all())
    if whole and distinct <= MAX_CLASSES:
        return "classification", f"the target holds {distinct} distinct whole numbers (at most {MAX_CLASSES})"
    kind = "whole numbers" if whole else "numbers with fractions"
    return "regression", f"the target holds {distinct} distinct {kind}"


def column_kind(series: pd.Series) -> Kind:
    """Numbers are numeric; strings, booleans and everything else are categorical."""
    return "numeric" if is_numeric_dtype(series) and not is_bool_dtype(series) else "categorical"


@dataclass(frozen=True)
class Schema:
    """The target, the task and the feature columns, in order, with their kinds.

    Attributes:
        target: The label column.
        features: ``(name, kind)`` pairs in the column order ingest saw (none for images: the pixels are the
            features).
        task: ``classification`` or ``regression``.
        modality: ``tabular`` (a row per example), ``image`` (an array per example, beside a table holding the
            target) or ``sequence`` (long format: a row per series and time step).
        sequence_id: The series column (sequences only).
        sequence_time: The column that orders steps within a series (sequences only).
        image_shape: ``(channels, height, width)`` of every image (images only).
    """

    target: str
    features: tuple[tuple[str, Kind], ...]
    task: Task = "classification"
    modality: Modality = "tabular"
    sequence_id: str | None = None
    sequence_time: str | None = None
    image_shape: tuple[int, int, int] | None = None

    @property
    def numeric(self) -> list[str]:
        """Numeric feature names, dates included (:meth:`coerce` turns them into days since 1970-01-01)."""
        return [name for name, kind in self.features if kind in ("numeric", "date")]

    @property
    def categorical(self) -> list[str]:
        """Categorical feature names."""
        return [name for name, kind in self.features if kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        """All feature names in order."""
        return [name for name, _ in self.features]

    def coerce(self, frame: pd.DataFrame, source: str, skip: Sequence[str] = ()) -> pd.DataFrame:
        """Select the feature columns of raw rows and give them the dtypes ingest saw.

        Raw rows may come from a CSV, where numbers arrive as text and missing values as empty strings.
        Extra columns (the target included) are ignored.

        Args:
            frame: Raw rows.
            source: Where the rows came from, for error messages.
            skip: Feature columns the model does not use (dropped by clean); they need not be present.

        Raises:
            PipelineError: If a feature column is missing, a numeric column holds text or a date column holds
                something that is not a date.
        """
        wanted = [(name, kind) for name, kind in self.features if name not in skip]
        missing = [name for name, _ in wanted if name not in frame.columns]
        if missing:
            raise PipelineError(f"{source}: missing feature column(s) {missing}; expected {[n for n, _ in wanted]}")
        out = {}
        for name, kind in wanted:
            column = frame[name]
            if kind == "numeric":
                if column_kind(column) == "numeric":  # already numbers: nothing to parse or check
                    out[name] = column.astype("float64")  # copy-on-write: no copy when already float64
                    continue
                converted = pd.to_numeric(column, errors="coerce").astype("float64")
                suspect = converted.isna() & column.notna()  # only cells that failed to parse need a look
                bad = suspect & (column.where(suspect).astype(str).str.strip() != "")
                if bad.any():
                    raise PipelineError(
                        f"{source}: column {name!r}: expected numbers, got {column[bad].iloc[0]!r}"
                    )
                out[name] = converted
            elif kind == "date":
                text = column if is_datetime64_any_dtype(column) else as_category(column)
                # times without a zone are read as UTC, so zoned and zone-less values compare as instants
                parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True).dt.tz_convert(None)
                bad = parsed.isna() & text.notna()
                if bad.any():
                    raise PipelineError(f"{source}: column {name!r}: expected ISO dates, got {column[bad].iloc[0]!r}")
                out[name] = (parsed - EPOCH) / pd.Timedelta(days=1)
            else:
                out[name] = as_category(column)
        return pd.DataFrame(out, index=frame.index)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "task": self.task,
            "modality": self.modality,
            "features": [{"name": n, "kind": k} for n, k in self.features],
            "sequence_id": self.sequence_id,
            "sequence_time": self.sequence_time,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Schema:
        """Inverse of :meth:`to_dict`."""
        shape = state.get("image_shape")
        return cls(
            state["target"],
            tuple((f["name"], f["kind"]) for f in state["features"]),
            state["task"],
            state.get("modality", "tabular"),
            state.get("sequence_id"),
            state.get("sequence_time"),
            None if shape is None else tuple(int(v) for v in shape),
        )
