"""Class rebalancing of the train split (never val or test, which keep their natural balance)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

STRATEGIES = ("none", "downsample", "upsample", "class_weight")


def class_weights(labels: pd.Series) -> dict[str, float]:
    """Weights that make every class count equally in the loss: ``n / (k * count)``, keyed by ``str(label)``."""
    counts = labels.value_counts().sort_index()
    return {str(label): float(len(labels) / (len(counts) * n)) for label, n in counts.items()}


def rebalance(frame: pd.DataFrame, target: str, strategy: str, seed: int) -> pd.DataFrame:
    """Equalise class counts by resampling rows.

    ``upsample`` draws extra rows with replacement from every smaller class until it matches the largest;
    ``downsample`` keeps a random subset of every larger class the size of the smallest. Original rows keep
    their order; upsampled copies follow them. ``none`` and ``class_weight`` (which reweights the loss
    instead, see :func:`class_weights`) keep the rows as they are.

    Args:
        frame: The train split.
        target: The label column.
        strategy: one of :data:`STRATEGIES`.
        seed: Seeds the draw.

    Returns:
        A new frame with a fresh index.
    """
    if strategy not in STRATEGIES:
        raise PipelineError(f"clean.imbalance: expected one of {STRATEGIES}, got {strategy!r}")
    if strategy in ("none", "class_weight"):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    labels = frame[target].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    if strategy == "upsample":
        goal = counts.max()
        extra = [
            rng.choice(np.flatnonzero(labels == c), size=goal - n, replace=True)
            for c, n in zip(classes, counts, strict=True)
            if n < goal
        ]
        rows = np.concatenate([np.arange(len(frame)), *extra]) if extra else np.arange(len(frame))
    else:
        goal = counts.min()
        keep = [rng.choice(np.flatnonzero(labels == c), size=goal, replace=False) for c in classes]
        rows = np.sort(np.concatenate(keep))
    return frame.iloc[rows].reset_index(drop=True)
