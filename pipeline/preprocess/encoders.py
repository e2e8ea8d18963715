"""The ``encoder.json`` the scale stage writes, read back as fitted steps: the one reader every later stage, the
model bundle and training share, so a file of the wrong shape is refused in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler, target_encoder_from_dict
from pipeline.preprocess.image import ImageScaler


@dataclass(frozen=True)
class Encoders:
    """The fitted feature and target steps, and for sequences the series column and the padded length.

    Attributes:
        features: Scales (and encodes) the inputs: a table's columns or an image's channels.
        target: Encodes class labels or standardises a regression target.
        sequence: ``{"series": id column, "length": steps}`` for sequences, else ``None``.
    """

    features: FeatureEncoder | ImageScaler
    target: LabelEncoder | TargetScaler
    sequence: dict[str, Any] | None

    @property
    def modality(self) -> str:
        """``image``, ``sequence`` or ``tabular``."""
        if isinstance(self.features, ImageScaler):
            return "image"
        return "sequence" if self.sequence else "tabular"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, as scale writes it."""
        return {"features": self.features.to_dict(), "target": self.target.to_dict(), "sequence": self.sequence}

    @classmethod
    def passthrough(cls, features: list[str] | tuple[int, ...], classes: list | None = None) -> Encoders:
        """Fitted steps that leave input as it is (method ``none``): the ``encoder.json`` of a scale-stage folder
        written straight from arrays that are already scaled, as the benchmarks and training tests do.

        Args:
            features: The table's column names, or an image's shape (C, H, W).
            classes: The encoded class labels; ``None`` for a regression target (centre 0, spread 1).
        """
        if isinstance(features, tuple):
            step: FeatureEncoder | ImageScaler = ImageScaler("none").fit(np.zeros((1, *features), dtype="float32"))
        else:
            table = pd.DataFrame(np.zeros((1, len(features))), columns=features)
            step = FeatureEncoder("none").fit(table, features, [])
        if classes is None:
            target: LabelEncoder | TargetScaler = TargetScaler()
            target.center_, target.scale_ = 0.0, 1.0
        else:
            target = LabelEncoder().fit(pd.Series(classes))
        return cls(step, target, None)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Encoders:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: On content of the wrong shape (:func:`pipeline.io.read_state` turns
                them into one line naming the file).
        """
        features = state["features"]
        if not isinstance(features, dict):
            raise TypeError(f"features: expected an object, got {type(features).__name__}")
        sequence = state.get("sequence")
        if sequence is not None:
            sequence = {"series": str(sequence["series"]), "length": int(sequence["length"])}
        return cls(
            ImageScaler.from_dict(features) if features.get("kind") == "image" else FeatureEncoder.from_dict(features),
            target_encoder_from_dict(state["target"]),
            sequence,
        )
