"""Per-channel scaling of images (N, C, H, W), fitted on the train images only."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config.base import check_choice
from pipeline.config.data import ScaleMethod
from pipeline.errors import PipelineError


class ImageScaler:
    """Scale every channel with one offset and spread learned over all train pixels of that channel.

    Per channel rather than per pixel: a corner pixel that is always 0 in train would otherwise get a zero
    spread, and a red channel should be scaled as one quantity. A constant channel is centred, not divided.

    Args:
        method: ``standard`` (mean, standard deviation), ``minmax`` (to [0, 1]), ``robust`` (median,
            interquartile range) or ``none``.
    """

    def __init__(self, method: ScaleMethod = "standard") -> None:
        self.method = method

    def fit(self, images: np.ndarray) -> ImageScaler:
        """Learn per-channel offsets and spreads from the train images (N, C, H, W)."""
        check_choice("scale.method", self.method, ScaleMethod, PipelineError)
        if images.ndim != 4:
            raise PipelineError(f"ImageScaler.fit: expected images N x C x H x W, got shape {images.shape}")
        self.shape_ = [int(v) for v in images.shape[1:]]
        channels = np.moveaxis(images, 1, 0).reshape(images.shape[1], -1).astype("float64")  # (C, N*H*W)
        if self.method == "standard":
            offset, spread = channels.mean(axis=1), channels.std(axis=1)
        elif self.method == "minmax":
            offset, spread = channels.min(axis=1), channels.max(axis=1) - channels.min(axis=1)
        elif self.method == "robust":
            q25, offset, q75 = np.percentile(channels, [25, 50, 75], axis=1)
            spread = q75 - q25
        else:
            offset, spread = np.zeros(len(channels)), np.ones(len(channels))
        self.offset_ = [float(v) for v in offset]
        self.spread_ = [float(v) if v > 0 else 1.0 for v in spread]
        return self

    def transform(self, images: np.ndarray, source: str = "input") -> np.ndarray:
        """Scaled float32 images; (N, H, W) input is taken as one channel.

        Raises:
            PipelineError: If unfitted, the images are not the fitted shape, or a pixel is not finite.
        """
        if not hasattr(self, "offset_"):
            raise PipelineError("ImageScaler is not fitted yet; call fit on the train images first")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[:, None]
        if images.dtype.kind not in "uif":
            raise PipelineError(f"{source}: expected numeric images, got dtype {images.dtype}")
        if list(images.shape[1:]) != self.shape_:
            raise PipelineError(
                f"{source}: expected images of shape C x H x W = {' x '.join(map(str, self.shape_))}, got "
                f"{' x '.join(map(str, images.shape[1:]))}"
            )
        if not np.isfinite(images).all():
            raise PipelineError(f"{source}: expected finite pixel values, got NaN or +/-inf")
        offset = np.asarray(self.offset_, dtype="float64")[None, :, None, None]
        spread = np.asarray(self.spread_, dtype="float64")[None, :, None, None]
        return ((images - offset) / spread).astype("float32")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"kind": "image", "method": self.method, "shape_": self.shape_, "offset_": self.offset_,
                "spread_": self.spread_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ImageScaler:
        """Rebuild from :meth:`to_dict` output."""
        step = cls(state["method"])
        step.shape_ = [int(v) for v in state["shape_"]]
        step.offset_ = [float(v) for v in state["offset_"]]
        step.spread_ = [float(v) for v in state["spread_"]]
        return step
