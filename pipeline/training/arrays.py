"""The scale stage's output as the tensors a network takes: plain torch, no Lightning.

Evaluation and prediction read splits through here, so neither pays Lightning's import (seconds) for
inference; :mod:`pipeline.training.data` wraps the same reading in the DataModule training uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.io import read_parquet, read_state
from pipeline.modality import MODALITIES
from pipeline.preprocess.encoders import Encoders


def read_encoders(folder: Path) -> Encoders:
    """The fitted steps the scale stage wrote into ``folder`` (its ``encoder.json``)."""
    return read_state(Path(folder) / "encoder.json", Encoders.from_dict)


def modality(folder: Path) -> str:
    """``image``, ``sequence`` or ``tabular``: what the scale stage wrote into ``folder``."""
    return read_encoders(folder).modality


def load_xy(
    folder: Path, split: str, target: str, task: str = "classification", length: int | None = None,
    fixed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split of the scale stage's output as network inputs and targets.

    Inputs are float32: (N, F) for tables, (N, C, H, W) for images, and (N, T, F + 1) for sequences, the last
    channel the mask, padded to T = the longest train series, or to the split's longest series where that is
    longer (see :func:`pipeline.preprocess.sequence.pad`). Targets are (N,): int64 classes or float32 values,
    one per row, image or series.

    Args:
        folder: The scale stage's output folder.
        split: ``train``, ``val`` or ``test``.
        target: The label column.
        task: ``classification`` or ``regression`` (the target's dtype).
        length: Sequences: pad to at least this many steps (to give two splits one width, as models that
            flatten them need); at least the longest train series whatever is given. Ignored for tables and images.
        fixed: Sequences: refuse a series longer than the longest train series (the network takes a fixed
            number of steps, as a feed-forward net does).

    Raises:
        PipelineError: If the target column is absent, or ``fixed`` and a series is too long.
    """
    folder = Path(folder)
    path = folder / f"{split}.parquet"
    frame = read_parquet(path)
    if target not in frame.columns:
        raise PipelineError(f"{path}: expected a target column {target!r}, got columns {list(frame.columns)}")
    encoders = read_encoders(folder)
    sequence = encoders.sequence or {}
    examples = MODALITIES[encoders.modality](target, sequence.get("series"))
    x = examples.scaled_inputs(folder, split, frame, max(sequence.get("length", 0), length or 0), fixed)
    labels = examples.labels(frame)
    dtype = "int64" if task == "classification" else "float32"
    return torch.from_numpy(np.ascontiguousarray(x, dtype="float32")), torch.from_numpy(labels.to_numpy(dtype=dtype, copy=True))
