"""Missing-value imputation fitted on the train split."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import as_category


def _check_fitted(step: Any) -> None:
    if not hasattr(step, "statistics_"):
        raise PipelineError(f"{type(step).__name__} is not fitted yet; call fit on the train split first")


class Imputer:
    """Fill missing values with a statistic learned from the train split.

    Args:
        numeric: ``mean`` or ``median`` for numeric columns.
        categorical: ``most_frequent`` for categorical columns (ties go to the smallest value, so the
            choice never depends on row order).
    """

    NUMERIC = ("mean", "median")
    CATEGORICAL = ("most_frequent",)

    def __init__(self, numeric: str = "median", categorical: str = "most_frequent") -> None:
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Imputer:
        """Learn one fill value per column from ``frame`` (the train split).

        Raises:
            PipelineError: On an unknown strategy or a column with no value to learn from.
        """
        if self.numeric not in self.NUMERIC:
            raise PipelineError(f"clean.numeric: expected one of {self.NUMERIC}, got {self.numeric!r}")
        if self.categorical not in self.CATEGORICAL:
            raise PipelineError(f"clean.categorical: expected one of {self.CATEGORICAL}, got {self.categorical!r}")
        stats: dict[str, Any] = {}
        for name in numeric:
            column = frame[name].dropna()
            if column.empty:
                raise PipelineError(f"column {name!r}: expected at least one value in the train split, got none")
            value = column.mean() if self.numeric == "mean" else column.median()
            stats[name] = float(value)
        for name in categorical:
            counts = as_category(frame[name]).dropna().value_counts()
            if counts.empty:
                raise PipelineError(f"column {name!r}: expected at least one value in the train split, got none")
            top = counts[counts == counts.max()].index
            stats[name] = sorted(top)[0]
        self.columns_ = list(numeric) + list(categorical)
        self.statistics_ = stats
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``frame`` with missing values filled.

        Raises:
            PipelineError: If unfitted or a fitted column is absent.
        """
        _check_fitted(self)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise PipelineError(f"Imputer.transform: expected columns {self.columns_}, missing {missing}")
        out = frame.copy()
        for name, value in self.statistics_.items():
            column = as_category(out[name]) if isinstance(value, str) else out[name]
            out[name] = column.fillna(value) if column.isna().any() else column
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        _check_fitted(self)
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "columns_": self.columns_,
            "statistics_": self.statistics_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Imputer:
        """Rebuild a fitted imputer from :meth:`to_dict` output."""
        step = cls(state["numeric"], state["categorical"])
        step.columns_ = list(state["columns_"])
        step.statistics_ = dict(state["statistics_"])
        for name, value in step.statistics_.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise PipelineError(f"imputer state: column {name!r}: expected a finite fill value, got {value}")
        return step
