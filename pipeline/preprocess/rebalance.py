"""Class rebalancing of the train split (never val or test, which keep their natural balance)."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd

from pipeline.config.data import Imbalance
from pipeline.errors import PipelineError, plain

RESAMPLING = tuple(s for s in get_args(Imbalance) if s != "smote")  # what resample_positions takes


def class_weights(labels: pd.Series) -> dict[str, float]:
    """Weights that make every class count equally in the loss: ``n / (k * count)``, keyed by ``str(label)``."""
    counts = labels.value_counts().sort_index()
    return {str(label): float(len(labels) / (len(counts) * n)) for label, n in counts.items()}


def class_prior(counts: dict[str, int], weights: dict[str, float] | None = None) -> dict[str, float]:
    """Each class's share of what training sees: its row count times its loss weight, normalised.

    Resampling changes the counts, class weights the weights; either way the network learns
    p(class | x) under this prior rather than the data's own, which :class:`pipeline.decision.Decision` undoes.
    """
    mass = {label: n * (1.0 if weights is None else weights[label]) for label, n in counts.items()}
    total = sum(mass.values())
    return {label: m / total for label, m in mass.items()}


def smote(
    frame: pd.DataFrame, target: str, numeric: list[str], categorical: list[str], neighbors: int, seed: int
) -> pd.DataFrame:
    """Add synthetic minority rows with imbalanced-learn's SMOTE (SMOTE-NC when there are categorical columns).

    New rows interpolate between a minority row and one of its ``neighbors`` nearest minority rows, measured
    on numeric columns standardised by this frame's spread (raw units would let grams outvote millimetres);
    categorical columns take the commonest value among the neighbours. Original rows come first.

    Raises:
        PipelineError: If a minority class has too few rows for ``neighbors``.
    """
    from imblearn.over_sampling import SMOTE, SMOTENC  # scikit-learn is slow to import: only when asked

    counts = frame[target].value_counts()
    if counts.min() <= neighbors:
        raise PipelineError(
            f"clean.smote_neighbors = {neighbors}: class {plain(counts.idxmin())!r} has {counts.min()} train rows, "
            f"expected more than {neighbors} (lower clean.smote_neighbors or use upsample)"
        )
    x = frame[numeric + categorical].copy()
    center, spread = x[numeric].mean(), x[numeric].std(ddof=0).replace(0.0, 1.0)
    x[numeric] = (x[numeric] - center) / spread
    if categorical:
        sampler = SMOTENC(categorical_features=list(range(len(numeric), len(x.columns))),
                          k_neighbors=neighbors, random_state=seed)
    else:
        sampler = SMOTE(k_neighbors=neighbors, random_state=seed)
    x_new, y_new = sampler.fit_resample(x, frame[target])
    x_new = pd.DataFrame(x_new, columns=x.columns)
    x_new[numeric] = x_new[numeric].astype("float64") * spread + center
    x_new.iloc[: len(frame), : len(numeric)] = frame[numeric].to_numpy()  # originals exactly, not round-tripped
    x_new[target] = y_new.to_numpy()
    for name in categorical:
        x_new[name] = x_new[name].astype(frame[name].dtype)
    return x_new[frame.columns.intersection(x_new.columns, sort=False)].reset_index(drop=True)


def smote_arrays(x: np.ndarray, labels: np.ndarray, neighbors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE on images: each synthetic image interpolates pixel by pixel between two same-class neighbours.

    Neighbours are found on the flattened pixels. Originals come first, unchanged.

    Raises:
        PipelineError: If a minority class has too few images for ``neighbors``.
    """
    from imblearn.over_sampling import SMOTE  # scikit-learn is slow to import: only when asked

    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() <= neighbors:
        raise PipelineError(
            f"clean.smote_neighbors = {neighbors}: class {plain(classes[counts.argmin()])!r} has {counts.min()} train images, "
            f"expected more than {neighbors} (lower clean.smote_neighbors or use upsample)"
        )
    flat = x.reshape(len(x), -1)
    x_new, y_new = SMOTE(k_neighbors=neighbors, random_state=seed).fit_resample(flat, labels)
    x_new = np.asarray(x_new, dtype=x.dtype).reshape(-1, *x.shape[1:])
    x_new[: len(x)] = x
    return x_new, np.asarray(y_new)


def resample_positions(labels: np.ndarray, strategy: Imbalance, seed: int) -> np.ndarray:
    """Positions of the rebalanced train rows (see :func:`rebalance`); repeated positions are upsampled copies."""
    if strategy not in RESAMPLING:
        raise PipelineError(
            f"clean.imbalance: expected one of {RESAMPLING} here (smote: call smote()), got {strategy!r}"
        )
    if strategy in ("none", "class_weight"):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if strategy == "upsample":
        goal = counts.max()
        extra = [
            rng.choice(np.flatnonzero(labels == c), size=goal - n, replace=True)
            for c, n in zip(classes, counts, strict=True)
            if n < goal
        ]
        # originals as they are, then only the drawn copies: no second copy of every original row
        return np.concatenate([np.arange(len(labels)), *extra])
    goal = counts.min()
    keep = [rng.choice(np.flatnonzero(labels == c), size=goal, replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


def rebalance(frame: pd.DataFrame, target: str, strategy: Imbalance, seed: int) -> pd.DataFrame:
    """Equalise class counts by resampling rows (``smote`` has its own function, as it needs the columns).

    ``upsample`` draws extra rows with replacement from every smaller class until it matches the largest;
    ``downsample`` keeps a random subset of every larger class the size of the smallest. Original rows keep
    their order; upsampled copies follow them. ``none`` and ``class_weight`` (which reweights the loss
    instead, see :func:`class_weights`) keep the rows as they are.

    Args:
        frame: The train split.
        target: The label column.
        strategy: one of :data:`RESAMPLING` (:data:`pipeline.config.data.Imbalance` but ``smote``).
        seed: Seeds the draw.

    Returns:
        A new frame with a fresh index.
    """
    return frame.iloc[resample_positions(frame[target].to_numpy(), strategy, seed)].reset_index(drop=True)
