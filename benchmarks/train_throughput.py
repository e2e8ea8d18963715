"""Training throughput: the pipeline's training against a hand-written PyTorch loop and plain Lightning.

One run, one process, the same data, network, batch size, optimizer and epochs for all three:
  (a) a minimal PyTorch loop that slices tensors by a shuffled index,
  (b) the pipeline's ``fit`` (the train stage without MLflow), reading a scaled folder written here,
  (c) plain Lightning fed by ``DataLoader(TensorDataset)``, logging the epoch loss the usual way.
Each side trains once untimed (warm-up) and then ``--repeat`` times; the best time counts. Prints samples per
second and the ratios b/a (target >= 0.85) and b/c (target >= 2). Nothing is asserted.

Usage: ``.venv/bin/python benchmarks/train_throughput.py [--rows 20000] [--batch-size 32] [--epochs 3]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark the working tree's pipeline

FEATURES, CLASSES, HIDDEN, LR, SEED = 32, 3, [64, 32], 1e-3, 0


def make_data(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded float32 features and 3 classes that depend on them."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(rows, FEATURES)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    return torch.from_numpy(x), torch.from_numpy(y)


def net() -> torch.nn.Module:
    from pipeline.nets.fnn import FNN

    torch.manual_seed(SEED)
    return FNN(FEATURES, HIDDEN, CLASSES, "relu", 0.0)


def hand_loop(x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int) -> float:
    """(a): shuffle an index each epoch and slice the tensors; nothing else."""
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def plain_lightning(x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int) -> float:
    """(c): a LightningModule fed by DataLoader(TensorDataset), logging the epoch loss as tutorials do."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Plain(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net()

        def training_step(self, batch_: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            xb, yb = batch_
            loss = torch.nn.functional.cross_entropy(self.net(xb), yb)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=LR)

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(SEED))
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(Plain(), loader)
    return time.perf_counter() - start


def pipeline_fit(x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int, folder: Path) -> float:
    """(b): the train stage's ``fit`` on a scaled folder holding the same rows (val: 1% of them)."""
    from pipeline.config import parse_params
    from pipeline.io import write_json
    from pipeline.preprocess.encoders import Encoders
    from pipeline.training.fit import fit

    if not (folder / "train.parquet").exists():
        n_val = max(len(x) // 100, 1)
        for name, rows in (("train", slice(None)), ("val", slice(0, n_val))):
            frame = pd.DataFrame(x[rows].numpy(), columns=[f"f{i}" for i in range(FEATURES)])
            frame["label"] = y[rows].numpy()
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        write_json(folder / "encoder.json",
                   Encoders.passthrough([f"f{i}" for i in range(FEATURES)], np.unique(np.asarray(y)).tolist()).to_dict())
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seed"] = SEED
    raw["data"].update(target="label")
    raw["model"].update(kind="fnn", hidden=HIDDEN, activation="relu", dropout=0.0)
    raw["train"].update(optimizer="adam", lr=LR, batch_size=batch, max_epochs=epochs, accelerator="cpu")
    raw["train"]["early_stopping"].update(patience=epochs + 1)
    params = parse_params(raw)
    start = time.perf_counter()
    fit(params, folder, n_outputs=CLASSES)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as train.cpu_threads pins it
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    x, y = make_data(args.rows)
    samples = args.rows * args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "a: hand-written loop": lambda: hand_loop(x, y, args.batch_size, args.epochs),
            "b: pipeline fit": lambda: pipeline_fit(x, y, args.batch_size, args.epochs, Path(tmp)),
            "c: Lightning + DataLoader": lambda: plain_lightning(x, y, args.batch_size, args.epochs),
        }
        rates = {}
        for name, run in sides.items():
            run()  # warm-up: imports, allocator, first-call overheads
            best = min(run() for _ in range(args.repeat))
            rates[name] = samples / best
    print(f"{args.rows:,} rows x {FEATURES} features, FNN {HIDDEN}, batch {args.batch_size}, {args.epochs} epochs, "
          f"1 CPU thread; torch {torch.__version__}")
    for name, rate in rates.items():
        print(f"  {name:<28} {rate:>12,.0f} samples/s")
    a, b, c = rates.values()
    print(f"  b/a = {b / a:.2f} (target >= 0.85)   b/c = {b / c:.2f} (target >= 2)   c/a = {c / a:.2f}")


if __name__ == "__main__":
    main()
