"""Class rebalancing of the train split (never val or test, which keep their natural balance)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

STRATEGIES = ("none", "downsample", "upsample")


def rebalance(frame: pd.DataFrame, target: str, strategy: str, seed: int) -> pd.DataFrame:
    """Equalise class counts by resampling rows.

    ``upsample`` draws extra rows with replacement from every smaller class until it matches the largest;
    ``downsample`` keeps a random subset of every larger class the size of the smallest. Original rows keep
    their order; upsampled copies follow them.

    Args:
        frame: The train split.
        target: The label column.
        strategy: ``none``, ``downsample`` or ``upsample``.
        seed: Seeds the draw.

    Returns:
        A new frame with a fresh index.
    """
    if strategy not in STRATEGIES:
        raise PipelineError(f"clean.imbalance: expected one of {STRATEGIES}, got {strategy!r}")
    if strategy == "none":
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
