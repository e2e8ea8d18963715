"""Training throughput: the pipeline's training against a hand-written PyTorch loop and plain Lightning.

Two cases from one run, each in one process with the same data, network, batch size, optimizer and epochs:
  * large: 20,000 rows, 3 long epochs (the inner loop's cost per step);
  * small: penguins-sized, 240 train rows and 52 val rows, 150 short epochs (the costs paid once per epoch).
For each case:
  (a) a minimal PyTorch loop that slices tensors by a shuffled index and runs a validation pass every epoch,
      with PyTorch's default Adam (a2: the same loop with the fused Adam kernel the pipeline uses, for reference),
  (b) the pipeline's ``fit`` as the train stage runs it, reading a scaled folder written here, checkpointing
      every ``train.checkpoint_every`` epochs (params.yaml's value) and logging each epoch's metrics into an
      MLflow run in a temporary SQLite store (the run's start and end are timed too),
  (c) large case only: plain Lightning fed by ``DataLoader(TensorDataset)``, logging the epoch loss the usual
      way.
Each side trains once untimed (warm-up) and then ``--repeat`` times; the best time counts. Prints samples per
second and the ratios b/a (targets: >= 0.9 large, >= 0.8 small) and b/c (target >= 2). Nothing is asserted.

Usage: ``.venv/bin/python benchmarks/train_throughput.py [--rows 20000] [--batch-size 32] [--epochs 3]
[--small-rows 240] [--small-epochs 150] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark the working tree's pipeline

CLASSES, HIDDEN, LR, SEED = 3, [64, 32], 1e-3, 0


@dataclass(frozen=True)
class Case:
    """One benchmark case: the train and val rows, their width, and the epochs."""

    name: str
    rows: int
    val_rows: int
    features: int
    epochs: int
    lightning: bool  # also time plain Lightning (c)


def make_data(rows: int, features: int, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded float32 features and 3 classes that depend on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    return torch.from_numpy(x), torch.from_numpy(y)


def net(features: int) -> torch.nn.Module:
    from pipeline.nets.fnn import FNN

    torch.manual_seed(SEED)
    return FNN(features, HIDDEN, CLASSES, "relu", 0.0)


def hand_loop(data: tuple[torch.Tensor, ...], batch: int, epochs: int, fused: bool = False) -> float:
    """(a): shuffle an index each epoch and slice the tensors; then one validation pass (loss and accuracy).
    ``fused`` takes PyTorch's fused Adam kernel, as the pipeline does (a2; PyTorch's default loops in Python)."""
    x, y, xv, yv = data
    model = net(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=fused)
    generator = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            float(torch.nn.functional.cross_entropy(out, yv)), float((out.argmax(1) == yv).float().mean())
    return time.perf_counter() - start


def plain_lightning(data: tuple[torch.Tensor, ...], batch: int, epochs: int) -> float:
    """(c): a LightningModule fed by DataLoader(TensorDataset), logging the epoch loss as tutorials do."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data[0], data[1]

    class Plain(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net(x.shape[1])

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


def write_scaled(data: tuple[torch.Tensor, ...], folder: Path) -> None:
    """The rows as the scale stage would have written them into ``folder``."""
    from pipeline.io import write_json
    from pipeline.preprocess.encoders import Encoders

    x, y, xv, yv = data
    columns = [f"f{i}" for i in range(x.shape[1])]
    folder.mkdir(parents=True)
    for name, (xs, ys) in (("train", (x, y)), ("val", (xv, yv))):
        frame = pd.DataFrame(xs.numpy(), columns=columns)
        frame["label"] = ys.numpy()
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    write_json(folder / "encoder.json", Encoders.passthrough(columns, list(range(CLASSES))).to_dict())


def pipeline_fit(batch: int, epochs: int, folder: Path, experiment: str) -> float:
    """(b): the train stage's ``fit`` on ``folder/scaled``, checkpointing into ``folder/checkpoints`` and
    logging each epoch into a new MLflow run through the stage's own restart runner."""
    import shutil

    from pipeline import tracking
    from pipeline.config import parse_params
    from pipeline.stages.train_record import TrackedRestarts
    from pipeline.training.fit import fit

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seed"] = SEED
    raw["data"].update(target="label")
    raw["model"].update(kind="fnn", hidden=HIDDEN, activation="relu", dropout=0.0)
    raw["train"].update(optimizer="adam", lr=LR, batch_size=batch, max_epochs=epochs, accelerator="cpu")
    raw["train"]["early_stopping"].update(patience=epochs + 1)
    params = parse_params(raw)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # a fresh training, never a resumed one

    def fit_one(sink: object) -> object:
        return fit(params, folder / "scaled", n_outputs=CLASSES, sink=sink, checkpoints=folder / "checkpoints")

    with tracking.tracked_run(experiment_id=experiment) as run:
        restarts = TrackedRestarts(experiment, run.info.run_id, 1, "classification")
        start = time.perf_counter()
        restarts(0, params, fit_one)
        return time.perf_counter() - start


def run_case(case: Case, batch: int, repeat: int, tmp: Path, experiment: str) -> dict[str, float]:
    """Samples per second of each side on ``case``."""
    x, y = make_data(case.rows, case.features)
    xv, yv = make_data(case.val_rows, case.features, seed=SEED + 1)
    data = (x, y, xv, yv)
    folder = tmp / case.name
    write_scaled(data, folder / "scaled")
    sides = {
        "a: hand-written loop + val": lambda: hand_loop(data, batch, case.epochs),
        "b: pipeline fit (as stage)": lambda: pipeline_fit(batch, case.epochs, folder, experiment),
        "a2: hand loop, fused Adam": lambda: hand_loop(data, batch, case.epochs, fused=True),
    }
    if case.lightning:
        sides["c: Lightning + DataLoader"] = lambda: plain_lightning(data, batch, case.epochs)
    rates = {}
    for name, run in sides.items():
        run()  # warm-up: imports, allocator, first-call overheads
        best = min(run() for _ in range(repeat))
        rates[name] = case.rows * case.epochs / best
    return rates


def report(case: Case, batch: int, rates: dict[str, float], target: float) -> None:
    """Print one case's rates and ratios."""
    print(f"{case.name}: {case.rows:,} train + {case.val_rows:,} val rows x {case.features} features, FNN {HIDDEN}, "
          f"batch {batch}, {case.epochs} epochs")
    for name, rate in rates.items():
        print(f"  {name:<28} {rate:>12,.0f} samples/s")
    a, b = rates["a: hand-written loop + val"], rates["b: pipeline fit (as stage)"]
    line = f"  b/a = {b / a:.2f} (target >= {target})   b/a2 = {b / rates['a2: hand loop, fused Adam']:.2f}"
    if "c: Lightning + DataLoader" in rates:
        c = rates["c: Lightning + DataLoader"]
        line += f"   b/c = {b / c:.2f} (target >= 2)   c/a = {c / a:.2f}"
    print(line)


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--small-rows", type=int, default=240)
    parser.add_argument("--small-epochs", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as train.cpu_threads pins it
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cases = [(Case("large", args.rows, max(args.rows // 100, 1), 32, args.epochs, True), 0.9),
             (Case("small", args.small_rows, max(args.small_rows * 52 // 240, 1), 10, args.small_epochs, False), 0.8)]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"  # never the project's own store
        from pipeline import tracking

        experiment = tracking.experiment_id(tracking.configure(Path(tmp)), "throughput", Path(tmp))
        results = [(case, run_case(case, args.batch_size, args.repeat, Path(tmp), experiment), target)
                   for case, target in cases]
    print(f"1 CPU thread; torch {torch.__version__}; train.checkpoint_every from params.yaml")
    for case, rates, target in results:
        report(case, args.batch_size, rates, target)


if __name__ == "__main__":
    main()
