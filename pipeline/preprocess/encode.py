"""Encoding fitted on the train split: scaled numerics, encoded categoricals, and the target (class indices
for classification, a standardised number for regression)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config.base import check_choice
from pipeline.config.data import Encoding, ScaleMethod
from pipeline.errors import PipelineError
from pipeline.preprocess.schema import as_category


class FeatureEncoder:
    """Scale numeric columns and encode categorical ones.

    With ``onehot``, a category not seen at fit time encodes as all zeros in its column's block; with
    ``ordinal``, as -1; so predicting on new data never fails on a new island name. A numeric column that is
    constant in train is centred but not divided (its spread is 0), rather than producing infinities.

    Args:
        method: ``standard`` (zero mean, unit variance), ``minmax`` (to [0, 1] on train), ``robust`` (median
            and interquartile range, for heavy tails and outliers) or ``none``.
        encoding: ``onehot`` (one 0/1 column per category) or ``ordinal`` (one column of category indices in
            sorted order).
    """

    def __init__(self, method: ScaleMethod = "standard", encoding: Encoding = "onehot") -> None:
        self.method = method
        self.encoding = encoding

    def fit(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        """Learn per-column offsets, spreads and category lists from ``frame`` (the train split)."""
        check_choice("scale.method", self.method, ScaleMethod, PipelineError)
        check_choice("scale.encoding", self.encoding, Encoding, PipelineError)
        self.numeric_ = list(numeric)
        self.categorical_ = list(categorical)
        bad = [c for c in self.numeric_ if frame[c].isna().any()]
        if bad:
            raise PipelineError(f"columns {bad}: expected no missing values after clean, got some")
        offset, spread = [], []
        for name in self.numeric_:  # a column at a time: no second copy of the whole numeric block
            values = frame[name].to_numpy(dtype="float64")
            if self.method == "standard":
                center, scale = values.mean(), values.std()
            elif self.method == "minmax":
                center, scale = values.min(), values.max() - values.min()
            elif self.method == "robust":
                q25, center, q75 = np.percentile(values, [25, 50, 75])
                scale = q75 - q25
            else:
                center, scale = 0.0, 1.0
            offset.append(float(center))
            spread.append(float(scale) if scale > 0 else 1.0)
        self.offset_, self.spread_ = offset, spread
        self.categories_ = {c: sorted(as_category(frame[c]).dropna().unique().tolist()) for c in self.categorical_}
        return self

    @property
    def feature_names_out_(self) -> list[str]:
        """Output column names: numerics, then ``column=category`` indicators (or the column, for ordinal)."""
        self._check_fitted()
        if self.encoding == "ordinal":
            return self.numeric_ + self.categorical_
        return self.numeric_ + [f"{c}={v}" for c in self.categorical_ for v in self.categories_[c]]

    def _check_fitted(self) -> None:
        if not hasattr(self, "offset_"):
            raise PipelineError("FeatureEncoder is not fitted yet; call fit on the train split first")

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` into a float32 matrix with columns :attr:`feature_names_out_`.

        Raises:
            PipelineError: If unfitted, a fitted column is absent, or a numeric value is missing.
        """
        self._check_fitted()
        missing = [c for c in self.numeric_ + self.categorical_ if c not in frame.columns]
        if missing:
            raise PipelineError(f"FeatureEncoder.transform: expected columns {self.numeric_ + self.categorical_}, missing {missing}")
        numeric = frame[self.numeric_].to_numpy(dtype="float64")
        if np.isnan(numeric).any():
            bad = [c for c in self.numeric_ if frame[c].isna().any()]
            raise PipelineError(f"columns {bad}: expected no missing values after clean, got some")
        # one float32 output, written block by block: no per-column temporaries to concatenate
        out = np.zeros((len(frame), len(self.feature_names_out_)), dtype="float32")
        out[:, : len(self.numeric_)] = (numeric - np.asarray(self.offset_)) / np.asarray(self.spread_)
        start = len(self.numeric_)
        rows = np.arange(len(frame))
        for column in self.categorical_:
            codes = pd.Index(self.categories_[column]).get_indexer(as_category(frame[column]))  # -1: unseen
            if self.encoding == "ordinal":
                out[:, start] = codes
                start += 1
            else:
                seen = codes >= 0
                out[rows[seen], start + codes[seen]] = 1.0
                start += len(self.categories_[column])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        self._check_fitted()
        return {
            "method": self.method,
            "encoding": self.encoding,
            "numeric_": self.numeric_,
            "categorical_": self.categorical_,
            "offset_": self.offset_,
            "spread_": self.spread_,
            "categories_": self.categories_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        step = cls(state["method"], state["encoding"])
        step.numeric_ = list(state["numeric_"])
        step.categorical_ = list(state["categorical_"])
        step.offset_ = [float(v) for v in state["offset_"]]
        step.spread_ = [float(v) for v in state["spread_"]]
        step.categories_ = {k: list(v) for k, v in state["categories_"].items()}
        return step


class LabelEncoder:
    """Map class labels to integers 0..K-1 in sorted order, learned from the train split."""

    def fit(self, labels: pd.Series) -> LabelEncoder:
        """Learn the sorted classes."""
        self.classes_ = sorted(labels.dropna().unique().tolist())
        if len(self.classes_) < 2:
            raise PipelineError(f"target {labels.name!r}: expected at least 2 classes in the train split, got {self.classes_}")
        return self

    def transform(self, labels: pd.Series) -> np.ndarray:
        """Encode labels; an unseen label is an error naming it."""
        if not hasattr(self, "classes_"):
            raise PipelineError("LabelEncoder is not fitted yet; call fit on the train split first")
        codes = pd.Index(self.classes_).get_indexer(labels)
        if (codes < 0).any():
            unseen = sorted({str(v) for v in labels[codes < 0].tolist()})
            raise PipelineError(f"target {labels.name!r}: expected one of {self.classes_}, got {unseen}")
        return codes.astype("int64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"kind": "classification", "classes_": self.classes_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LabelEncoder:
        """Rebuild from :meth:`to_dict` output."""
        step = cls()
        step.classes_ = list(state["classes_"])
        return step


class TargetScaler:
    """Standardise a regression target with train's mean and spread; :meth:`inverse` undoes it for predictions.

    Networks fit a target near zero with unit spread far more easily than one in the hundreds, and the
    loss curves of different datasets become comparable.
    """

    def fit(self, values: pd.Series) -> TargetScaler:
        """Learn the mean and standard deviation of the train target."""
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        if numbers.isna().any():
            raise PipelineError(f"target {values.name!r}: expected numbers for a regression task, got {values[numbers.isna()].iloc[0]!r}")
        self.center_ = float(numbers.mean())
        spread = float(numbers.std(ddof=0))
        self.scale_ = spread if spread > 0 else 1.0
        return self

    def transform(self, values: pd.Series) -> np.ndarray:
        """Standardised float32 targets."""
        if not hasattr(self, "center_"):
            raise PipelineError("TargetScaler is not fitted yet; call fit on the train split first")
        return ((values.to_numpy(dtype="float64") - self.center_) / self.scale_).astype("float32")

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Network outputs back in the target's units (float64)."""
        return values.astype("float64") * self.scale_ + self.center_

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"kind": "regression", "center_": self.center_, "scale_": self.scale_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TargetScaler:
        """Rebuild from :meth:`to_dict` output."""
        step = cls()
        step.center_, step.scale_ = float(state["center_"]), float(state["scale_"])
        return step


def target_encoder(task: str) -> LabelEncoder | TargetScaler:
    """A fresh target encoder for ``task``."""
    return LabelEncoder() if task == "classification" else TargetScaler()


def target_encoder_from_dict(state: dict[str, Any]) -> LabelEncoder | TargetScaler:
    """Rebuild whichever target encoder ``state`` describes."""
    return LabelEncoder.from_dict(state) if state["kind"] == "classification" else TargetScaler.from_dict(state)
