"""The DataModule: reads the scale stage's output in ``setup``; it never downloads or re-splits."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.errors import PipelineError
from pipeline.io import read_json, read_npy, read_parquet
from pipeline.preprocess import sequence as seq


def modality(folder: Path) -> str:
    """``image``, ``sequence`` or ``tabular``: what the scale stage wrote into ``folder``."""
    encoder = read_json(Path(folder) / "encoder.json")
    if encoder["features"].get("kind") == "image":
        return "image"
    return "sequence" if encoder.get("sequence") else "tabular"


def load_xy(folder: Path, split: str, target: str, task: str = "classification") -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split of the scale stage's output as network inputs and targets.

    Inputs are float32: (N, F) for tables, (N, C, H, W) for images, and (N, T, F + 1) for sequences (padded
    to the longest train series, the last channel the mask). Targets are (N,): int64 classes or float32 values,
    one per row, image or series.
    """
    folder = Path(folder)
    path = folder / f"{split}.parquet"
    frame = read_parquet(path)
    if target not in frame.columns:
        raise PipelineError(f"{path}: expected a target column {target!r}, got columns {list(frame.columns)}")
    encoder = read_json(folder / "encoder.json")
    sequence = encoder.get("sequence")
    if encoder["features"].get("kind") == "image":
        x = read_npy(folder / f"{split}.npy")
        labels = frame[target]
    elif sequence:
        columns = [c for c in frame.columns if c not in (sequence["series"], target)]
        _, x = seq.pad(frame, sequence["series"], columns, sequence["length"], str(path))
        labels = seq.series_labels(frame, sequence["series"], target)
    else:
        x = frame.drop(columns=[target]).to_numpy(dtype="float32", copy=True)
        labels = frame[target]
    dtype = "int64" if task == "classification" else "float32"
    return torch.from_numpy(np.ascontiguousarray(x, dtype="float32")), torch.from_numpy(labels.to_numpy(dtype=dtype, copy=True))


class ScaledDataModule(L.LightningDataModule):
    """Train and validation tensors from ``data/scaled``.

    Args:
        folder: The scale stage's output folder.
        target: The label column.
        batch_size: Rows per training batch.
        seed: Seeds the shuffling generator, so batch order is reproducible.
        task: ``classification`` or ``regression`` (the target's dtype).
    """

    def __init__(self, folder: Path, target: str, batch_size: int, seed: int, task: str = "classification") -> None:
        super().__init__()
        self.folder = Path(folder)
        self.target = target
        self.task = task
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        self.train_set = TensorDataset(*load_xy(self.folder, "train", self.target, self.task))
        self.val_set = TensorDataset(*load_xy(self.folder, "val", self.target, self.task))
        self.input_shape = tuple(int(v) for v in self.train_set.tensors[0].shape[1:])
        self.modality = modality(self.folder)
        self.n_features = int(np.prod(self.input_shape))  # what a feed-forward net sees once it flattens

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(len(self.val_set), 1))
