"""The DataModule: reads the scale stage's output in ``setup``; it never downloads or re-splits."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.errors import PipelineError
from pipeline.io import read_parquet


def load_xy(path: Path, target: str, task: str = "classification") -> tuple[torch.Tensor, torch.Tensor]:
    """Read a scaled split as features float32 (N, F) and targets (N,): int64 classes or float32 values."""
    frame = read_parquet(path)
    if target not in frame.columns:
        raise PipelineError(f"{path}: expected a target column {target!r}, got columns {list(frame.columns)}")
    x = torch.from_numpy(frame.drop(columns=[target]).to_numpy(dtype="float32", copy=True))
    dtype = "int64" if task == "classification" else "float32"
    y = torch.from_numpy(frame[target].to_numpy(dtype=dtype, copy=True))
    return x, y


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
        self.train_set = TensorDataset(*load_xy(self.folder / "train.parquet", self.target, self.task))
        self.val_set = TensorDataset(*load_xy(self.folder / "val.parquet", self.target, self.task))
        self.n_features = self.train_set.tensors[0].shape[1]

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(len(self.val_set), 1))
