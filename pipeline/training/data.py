"""The DataModule: reads the scale stage's output in ``setup`` (through :mod:`pipeline.training.arrays`); it never
downloads or re-splits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import TensorDataset

from pipeline.training.arrays import load_xy, modality


class ScaledDataModule(L.LightningDataModule):
    """Train and validation tensors from ``data/scaled``.

    Args:
        folder: The scale stage's output folder.
        target: The label column.
        seed: Seeds the shuffling generator, so batch order is reproducible.
        task: ``classification`` or ``regression`` (the target's dtype).
        fixed_length: The network takes a fixed number of steps (a feed-forward net): a val series longer
            than every train series is refused in ``setup``, before any training.
        eval_chunk: ``train.eval_chunk``: a val split of more examples stays in host memory (see :class:`FullBatch`).
    """

    def __init__(self, folder: Path, target: str, seed: int, task: str = "classification",
                 fixed_length: bool = False, eval_chunk: int | None = None) -> None:
        super().__init__()
        self.fixed_length = fixed_length
        self.eval_chunk = eval_chunk
        self.folder = Path(folder)
        self.target = target
        self.task = task
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        self.train_set = TensorDataset(*load_xy(self.folder, "train", self.target, self.task))
        # val may hold longer series than train (then its batch is wider): a net of any length takes them
        self.val_set = TensorDataset(*load_xy(self.folder, "val", self.target, self.task, fixed=self.fixed_length))
        # one example's shape; for sequences (T, F + 1) with T the longest train series, what a feed-forward net takes
        self.input_shape = tuple(int(v) for v in self.train_set.tensors[0].shape[1:])
        self.modality = modality(self.folder)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> EpochPasses:
        x, y = self.train_set.tensors
        self._passes = EpochPasses(x, y, self.seed, self._device())
        if getattr(self, "_generator_state", None) is not None:  # resuming: the batch order goes on, not over
            self._passes.generator.set_state(self._generator_state)
        return self._passes

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The batch-order generator's state, for a training checkpoint."""
        passes = getattr(self, "_passes", None)
        return {} if passes is None else {"generator": passes.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self._generator_state = state_dict.get("generator")

    def val_dataloader(self) -> FullBatch:
        x, y = self.val_set.tensors
        return FullBatch(x, y, self._device(), self.eval_chunk)  # the module runs it in chunks of eval_chunk


class EpochPasses:
    """The train split as one item per epoch: the tensors, held on the training device, and a fresh permutation.

    The LightningModule walks the permutation in mini-batches itself (see ``LitModel.training_step``), slicing
    by index as a hand-written loop does. A ``DataLoader`` over a ``TensorDataset`` instead fetches and
    collates every row, and Lightning's per-step machinery then costs more than a small network's step; one
    Lightning step per epoch keeps both out of the inner loop. The permutation generator is seeded once, so
    the batch order is reproducible and differs between epochs.

    Args:
        x: Inputs (N, ...).
        y: Targets (N,).
        seed: Seeds the permutation generator.
        device: Where the tensors live during training.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, device: torch.device) -> None:
        self.x, self.y = x.to(device), y.to(device)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.y), generator=self.generator).to(self.x.device)
        yield self.x, self.y, order


class FullBatch:
    """A split as a single item (a plain list would read as several loaders); ``LitModel`` runs its forward pass
    in chunks of ``train.eval_chunk`` examples and scores the concatenated outputs once.

    A split that fits in one chunk is held on the training device, as a whole batch always was. A larger one is
    held in host memory (pinned, for a CUDA device) and yielded as :class:`OnHost`, which Lightning does not move:
    each chunk goes to the device in turn, so device memory holds one chunk's inputs and activations, never the
    split's. The targets (N,) always go to the device, where the loss is computed.

    Args:
        x: Inputs (N, ...).
        y: Targets (N,).
        device: The training device.
        chunk: Most examples per forward pass (None: the whole split is one).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, chunk: int | None = None) -> None:
        if chunk is None or len(x) <= chunk:
            self.x: torch.Tensor | OnHost = x.to(device)
        else:
            self.x = OnHost(x.pin_memory() if device.type == "cuda" else x)
        self.y = y.to(device)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor | OnHost, torch.Tensor]]:
        yield self.x, self.y


class OnHost:
    """A tensor left in host memory: Lightning moves a batch's tensors (and anything with a ``to`` method, and
    collections of them) to the device before a step, and this is none of those."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
