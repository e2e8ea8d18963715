"""Feature encoding fitted on the train split: one-hot categoricals, scaled numerics, integer labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import as_category

METHODS = ("standard", "minmax", "none")


class FeatureEncoder:
    """Standardize or normalise numeric columns and one-hot encode categorical ones.

    A category not seen at fit time encodes as all zeros in its column's block, so predicting on new data
    never fails on a new island name. A numeric column that is constant in train is centred but not divided
    (its spread is 0), rather than producing infinities.

    Args:
        method: ``standard`` (zero mean, unit variance), ``minmax`` (to [0, 1] on train) or ``none``.
    """

    def __init__(self, method: str = "standard") -> None:
        self.method = method

    def fit(self, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        """Learn per-column offsets, spreads and category lists from ``frame`` (the train split)."""
        if self.method not in METHODS:
            raise PipelineError(f"scale.method: expected one of {METHODS}, got {self.method!r}")
        self.numeric_ = list(numeric)
        self.categorical_ = list(categorical)
        values = frame[self.numeric_].to_numpy(dtype="float64")
        if np.isnan(values).any():
            bad = [c for c in self.numeric_ if frame[c].isna().any()]
            raise PipelineError(f"columns {bad}: expected no missing values after clean, got some")
        if self.method == "standard":
            offset, spread = values.mean(axis=0), values.std(axis=0)
        elif self.method == "minmax":
            offset, spread = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        else:
            offset, spread = np.zeros(len(self.numeric_)), np.ones(len(self.numeric_))
        spread = np.where(spread > 0, spread, 1.0)
        self.offset_ = [float(v) for v in offset]
        self.spread_ = [float(v) for v in spread]
        self.categories_ = {c: sorted(as_category(frame[c]).dropna().unique().tolist()) for c in self.categorical_}
        return self

    @property
    def feature_names_out_(self) -> list[str]:
        """Output column names: numerics, then ``column=category`` indicators."""
        self._check_fitted()
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
        blocks = [(numeric - np.asarray(self.offset_)) / np.asarray(self.spread_)]
        for column in self.categorical_:
            values = as_category(frame[column]).to_numpy()
            cats = np.asarray(self.categories_[column], dtype=object)
            blocks.append((values[:, None] == cats[None, :]).astype("float64"))
        return np.concatenate(blocks, axis=1).astype("float32")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        self._check_fitted()
        return {
            "method": self.method,
            "numeric_": self.numeric_,
            "categorical_": self.categorical_,
            "offset_": self.offset_,
            "spread_": self.spread_,
            "categories_": self.categories_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        step = cls(state["method"])
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
        index = {c: i for i, c in enumerate(self.classes_)}
        unseen = sorted({v for v in labels.tolist() if v not in index}, key=str)
        if unseen:
            raise PipelineError(f"target {labels.name!r}: expected one of {self.classes_}, got {unseen}")
        return np.asarray([index[v] for v in labels.tolist()], dtype="int64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"classes_": self.classes_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LabelEncoder:
        """Rebuild from :meth:`to_dict` output."""
        step = cls()
        step.classes_ = list(state["classes_"])
        return step
