"""Missing values: column elimination, indicators and imputation, all learned from the train split."""

from __future__ import annotations

import math
from typing import Any, get_args

import numpy as np
import pandas as pd

from pipeline.config.base import check_choice
from pipeline.config.data import AlongTimeFill, CategoricalFill, NumericFill, RowFill
from pipeline.errors import PipelineError
from pipeline.preprocess.schema import as_category
from pipeline.preprocess.sequence import fill_along_time

INDICATOR = "__missing"


def _most_frequent(values: pd.Series) -> Any:
    """The commonest value; ties go to the smallest, so the choice never depends on row order."""
    counts = values.value_counts()
    return sorted(counts[counts == counts.max()].index)[0]


class Imputer:
    """Drop mostly-empty columns, flag missing values, and fill the rest with what train says.

    Args:
        numeric: Fill for numeric columns: ``mean``, ``median``, ``most_frequent``, ``constant``
            (``fill_value``) or ``knn`` (mean of the ``knn_neighbors`` nearest train rows, measured on the
            columns both rows have, each standardised by train's spread); for sequences also ``ffill`` (last
            observation carried forward) or ``interpolate`` (linear between neighbours), within a series only,
            with the train median for a series that never observes the column.
        categorical: Fill for categorical columns: ``most_frequent`` or ``constant`` (``fill_category``).
        fill_value: The number ``constant`` fills numeric columns with.
        fill_category: The category ``constant`` fills categorical columns with.
        max_missing: Columns whose share of missing values in train exceeds this are dropped (1.0 keeps all).
        drop_rows: Learn fill values from complete train rows only; the clean stage then keeps only those rows
            in train (see :meth:`complete`), while val, test and new rows are still filled.
        indicators: Add a ``<column>__missing`` 0/1 column for every kept column with missing values in train.
        knn_neighbors: Neighbours for ``knn``.
        knn_reference_rows: At most this many train rows (a seeded sample) are kept as ``knn`` references;
            they are fitted state and travel with the model.
        seed: Seeds that sample.
        series: The series column of long-format sequences (needed by ``ffill`` and ``interpolate``); rows
            must be ordered by series and time.
    """

    def __init__(
        self,
        numeric: NumericFill = "median",
        categorical: CategoricalFill = "most_frequent",
        fill_value: float = 0.0,
        fill_category: str = "missing",
        max_missing: float = 1.0,
        drop_rows: bool = False,
        indicators: bool = False,
        knn_neighbors: int = 5,
        knn_reference_rows: int = 2000,
        seed: int = 0,
        series: str | None = None,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.fill_value = fill_value
        self.fill_category = fill_category
        self.max_missing = max_missing
        self.drop_rows = drop_rows
        self.indicators = indicators
        self.knn_neighbors = knn_neighbors
        self.knn_reference_rows = knn_reference_rows
        self.seed = seed
        self.series = series

    def fit(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Imputer:
        """Learn dropped columns, indicator columns and fill values from ``frame`` (the train split).

        Raises:
            PipelineError: On an unknown strategy or a kept column with no value to learn from.
        """
        check_choice("clean.numeric", self.numeric, NumericFill, PipelineError)
        if self.numeric in get_args(AlongTimeFill) and self.series is None:
            raise PipelineError(
                f"clean.numeric = {self.numeric!r}: expected sequence data (data.sequence set) to fill along time; "
                f"for one row per example use one of {get_args(RowFill)}"
            )
        check_choice("clean.categorical", self.categorical, CategoricalFill, PipelineError)
        share = frame[list(numeric) + list(categorical)].isna().mean()
        self.dropped_ = [c for c in share.index if share[c] > self.max_missing]
        self.numeric_ = [c for c in numeric if c not in self.dropped_]
        self.categorical_ = [c for c in categorical if c not in self.dropped_]
        self.indicators_ = [c for c in self.numeric_ + self.categorical_ if self.indicators and share[c] > 0]
        if self.drop_rows:
            frame = frame.loc[self.complete(frame)]
            if frame.empty:
                raise PipelineError(
                    "clean.drop_rows = true: expected some complete train rows, got none "
                    "(lower clean.max_missing to drop the emptiest columns, or impute instead)"
                )
        stats: dict[str, Any] = {}
        for name in self.numeric_:
            column = frame[name].dropna()
            if column.empty and self.numeric != "constant":
                raise PipelineError(
                    f"column {name!r}: expected at least one value in the train split, got none "
                    "(lower clean.max_missing to drop it, or use clean.numeric: constant)"
                )
            if self.numeric == "constant":
                stats[name] = float(self.fill_value)
            elif self.numeric == "mean":
                stats[name] = float(column.mean())
            elif self.numeric == "most_frequent":
                stats[name] = float(_most_frequent(column))
            else:  # median; knn's fallback for a row with no known numeric value; ffill's for an empty series
                stats[name] = float(column.median())
        for name in self.categorical_:
            column = as_category(frame[name]).dropna()
            if self.categorical == "constant":
                stats[name] = self.fill_category
            elif column.empty:
                raise PipelineError(
                    f"column {name!r}: expected at least one value in the train split, got none "
                    "(lower clean.max_missing to drop it, or use clean.categorical: constant)"
                )
            else:
                stats[name] = _most_frequent(column)
        self.statistics_ = stats
        if self.numeric == "knn" and self.numeric_:
            values = frame[self.numeric_].to_numpy(dtype="float64")
            rng = np.random.default_rng(self.seed)
            if len(values) > self.knn_reference_rows:
                values = values[np.sort(rng.choice(len(values), self.knn_reference_rows, replace=False))]
            spread = np.nanstd(values, axis=0)
            self.knn_center_ = [float(v) for v in np.nanmean(values, axis=0)]
            self.knn_spread_ = [float(v) if v > 0 else 1.0 for v in spread]
            # JSON has no NaN: a missing reference value is stored as null (read back as NaN)
            self.knn_reference_ = [[None if math.isnan(v) else v for v in row] for row in values.tolist()]
        return self

    def complete(self, frame: pd.DataFrame) -> pd.Series:
        """True for rows with a value in every kept column; for sequences, for every row of a complete series
        (eliminating single steps would leave holes in time)."""
        complete = frame[self.numeric_ + self.categorical_].notna().all(axis=1)
        if self.series is not None:
            complete = complete.groupby(frame[self.series], sort=False).transform("all")
        return complete

    @property
    def numeric_out_(self) -> list[str]:
        """Numeric columns after transform: kept numerics, then the 0/1 indicators."""
        return self.numeric_ + self.indicator_columns_

    @property
    def indicator_columns_(self) -> list[str]:
        """The 0/1 missing-value flag columns transform adds (the tail of :attr:`numeric_out_`)."""
        self._check_fitted()
        return [f"{c}{INDICATOR}" for c in self.indicators_]

    @property
    def categorical_out_(self) -> list[str]:
        """Categorical columns after transform."""
        self._check_fitted()
        return list(self.categorical_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "statistics_"):
            raise PipelineError("Imputer is not fitted yet; call fit on the train split first")

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``frame`` without the dropped columns, with indicators added and values filled.

        Raises:
            PipelineError: If unfitted or a kept column is absent.
        """
        self._check_fitted()
        kept = self.numeric_ + self.categorical_
        missing = [c for c in kept if c not in frame.columns]
        if missing:
            raise PipelineError(f"Imputer.transform: expected columns {kept}, missing {missing}")
        out = frame.drop(columns=[c for c in self.dropped_ if c in frame.columns])
        for name in self.indicators_:  # flag before filling, or every flag would read 0
            out[f"{name}{INDICATOR}"] = out[name].isna().astype("float64")
        if self.numeric == "knn" and self.numeric_:
            out[self.numeric_] = self._knn_fill(out[self.numeric_].to_numpy(dtype="float64"))
        if self.numeric in get_args(AlongTimeFill) and self.numeric_ and out[self.numeric_].isna().any().any():
            out = fill_along_time(out, self.series, self.numeric_, self.numeric)
        for name, value in self.statistics_.items():
            column = as_category(out[name]) if name in self.categorical_ else out[name]
            out[name] = column.fillna(value) if column.isna().any() else column
        return out

    def _knn_fill(self, values: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Fill NaNs in ``values`` (N, F) from the nearest reference rows on standardised shared columns.

        Distances are scikit-learn's nan-euclidean: over the columns both rows have, scaled up for the ones
        they do not share. A value with no donor stays NaN and gets the median fallback afterwards.
        """
        reference = np.array(self.knn_reference_, dtype="float64")  # (R, F); null -> NaN
        center, spread = np.asarray(self.knn_center_), np.asarray(self.knn_spread_)
        ref_known = ~np.isnan(reference)  # (R, F)
        ref_z = np.where(ref_known, (reference - center) / spread, 0.0)
        n_features = values.shape[1]
        out = values.copy()
        rows = np.flatnonzero(np.isnan(values).any(axis=1))
        for start in range(0, len(rows), chunk):
            idx = rows[start : start + chunk]
            known = ~np.isnan(values[idx])  # (C, F)
            z = np.where(known, (values[idx] - center) / spread, 0.0)
            shared = known[:, None, :] & ref_known[None, :, :]  # (C, R, F)
            diff = np.where(shared, z[:, None, :] - ref_z[None, :, :], 0.0)
            n_shared = shared.sum(axis=2)  # (C, R)
            dist = np.sqrt((diff**2).sum(axis=2) * n_features / np.maximum(n_shared, 1))
            dist[n_shared == 0] = np.inf
            for j in range(n_features):
                need = ~known[:, j]
                if not need.any():
                    continue
                d = np.where(ref_known[None, :, j], dist[need], np.inf)  # (c, R): donors must have column j
                nearest = np.argsort(d, axis=1, kind="stable")[:, : self.knn_neighbors]
                valid = np.isfinite(np.take_along_axis(d, nearest, axis=1))
                donors = np.where(valid, reference[nearest, j], 0.0)
                count = valid.sum(axis=1)
                out[idx[need], j] = np.where(count > 0, donors.sum(axis=1) / np.maximum(count, 1), np.nan)
        return out

    _STATE = ("numeric", "categorical", "fill_value", "fill_category", "max_missing", "drop_rows", "indicators",
              "knn_neighbors", "knn_reference_rows", "seed", "series")
    _LEARNED = ("dropped_", "numeric_", "categorical_", "indicators_", "statistics_",
                "knn_center_", "knn_spread_", "knn_reference_")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: settings and everything learned."""
        self._check_fitted()
        state = {key: getattr(self, key) for key in self._STATE}
        state.update({key: getattr(self, key) for key in self._LEARNED if hasattr(self, key)})
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Imputer:
        """Rebuild a fitted imputer from :meth:`to_dict` output.

        Raises:
            PipelineError: If a fill value is not finite (a corrupt or hand-edited state file).
            KeyError: If something every fit learns is missing (the nearest-neighbour fields only a ``knn``
                fit learns are optional).
        """
        step = cls(**{key: state[key] for key in cls._STATE if key in state})
        for key in cls._LEARNED:
            if key in state:
                setattr(step, key, state[key])
            elif not key.startswith("knn_"):
                raise KeyError(key)
        for name, value in step.statistics_.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise PipelineError(f"imputer state: column {name!r}: expected a finite fill value, got {value}")
        return step
