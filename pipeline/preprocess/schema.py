"""The feature schema ingest records: which columns are numeric and which categorical."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from pipeline.errors import PipelineError

Kind = Literal["numeric", "categorical"]


def as_category(column: pd.Series) -> pd.Series:
    """Categorical values in the one form every step compares: text, with missing and blank cells missing.

    Training data (a boolean column, say) and rows read back from a CSV must give the same categories, so
    ``True`` and ``"True"`` are the same value and an empty cell is missing, not a category of its own.
    """
    text = column.astype("str")  # pandas 3's native text dtype keeps missing values missing (NaN)
    return text.where(text.str.strip() != "")


def column_kind(series: pd.Series) -> Kind:
    """Numbers are numeric; strings, booleans and everything else are categorical."""
    return "numeric" if is_numeric_dtype(series) and not is_bool_dtype(series) else "categorical"


@dataclass(frozen=True)
class Schema:
    """The target and the feature columns, in order, with their kinds.

    Attributes:
        target: The label column.
        features: ``(name, kind)`` pairs in the column order ingest saw.
    """

    target: str
    features: tuple[tuple[str, Kind], ...]

    @classmethod
    def infer(cls, frame: pd.DataFrame, target: str) -> Schema:
        """Read the kinds off a frame's dtypes."""
        return cls(target, tuple((c, column_kind(frame[c])) for c in frame.columns if c != target))

    @property
    def numeric(self) -> list[str]:
        """Numeric feature names."""
        return [name for name, kind in self.features if kind == "numeric"]

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
            PipelineError: If a feature column is missing or a numeric column holds text.
        """
        wanted = [(name, kind) for name, kind in self.features if name not in skip]
        missing = [name for name, _ in wanted if name not in frame.columns]
        if missing:
            raise PipelineError(f"{source}: missing feature column(s) {missing}; expected {[n for n, _ in wanted]}")
        out = {}
        for name, kind in wanted:
            column = frame[name]
            if kind == "numeric":
                converted = pd.to_numeric(column, errors="coerce").astype("float64")
                bad = converted.isna() & column.notna() & (column.astype(str).str.strip() != "")
                if bad.any():
                    raise PipelineError(
                        f"{source}: column {name!r}: expected numbers, got {column[bad].iloc[0]!r}"
                    )
                out[name] = converted
            else:
                out[name] = as_category(column)
        return pd.DataFrame(out, index=frame.index)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target": self.target, "features": [{"name": n, "kind": k} for n, k in self.features]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Schema:
        """Inverse of :meth:`to_dict`."""
        return cls(state["target"], tuple((f["name"], f["kind"]) for f in state["features"]))
