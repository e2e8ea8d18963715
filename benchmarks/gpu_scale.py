"""Training at scale: the pipeline's CNN training against a minimal PyTorch loop on millions of 28x28 images.

One run, one process, the same generated data, network, optimizer and batch size for both sides:
  (a) a minimal PyTorch loop: the tensors on the device, a shuffled index sliced per batch, nothing else;
  (b) the pipeline's ``fit`` (the train stage without MLflow) reading a scaled folder written here.
Both run with deterministic algorithms and one CPU thread, as the pipeline trains. For each batch size in
``--batch-sizes`` each side trains once untimed (warm-up: cuDNN autotuning, allocator)
and then ``--epochs`` timed epochs. Prints samples per second, the ratio b/a, and the peak device memory of
each side (``torch.cuda.max_memory_allocated``; on a CPU run, none). Nothing is asserted.

The images are seeded noise with a class-dependent bright square, so the network has something to learn;
their content does not change the cost of a step. Sized to fill a GPU: 2,000,000 images of 28x28 float32 are
6.3 GB, held on the device by both sides, as the pipeline does with its data.

Usage (GPU machine): ``python benchmarks/gpu_scale.py [--images 2000000] [--batch-sizes 256 1024 4096]``
Quick check on a CPU: ``python benchmarks/gpu_scale.py --images 4000 --batch-sizes 64 256 --device cpu``
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

CLASSES, SIDE, CHANNELS, HIDDEN, LR, SEED = 10, 28, [32, 64], [128], 1e-3, 0


def make_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (N, 1, 28, 28) float32 images and their classes: noise plus a bright 6x6 square whose position
    is the class."""
    rng = np.random.default_rng(SEED)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.standard_normal((n, 1, SIDE, SIDE), dtype=np.float32) * 0.5
    rows, cols = (y // 5) * 12 + 4, (y % 5) * 5 + 1  # ten spots in a 2 x 5 grid
    for dr in range(6):
        for dc in range(6):
            x[np.arange(n), 0, rows + dr, cols + dc] += 2.0
    return x, y.astype("int64")


def spec() -> dict:
    """The network both sides train: the pipeline's CNN on one-channel 28x28 images."""
    return {"kind": "cnn", "in_channels": 1, "dims": 2, "channels": CHANNELS, "kernel": 3, "stride": 1,
            "padding": 1, "pool": "max", "batch_norm": True, "out_features": CLASSES, "hidden": HIDDEN,
            "activation": "relu", "dropout": 0.0, "bias": True, "norm": "none", "init": "default"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory(device: torch.device) -> float | None:
    """Peak device memory since the last reset, in GiB (None on a CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def hand_loop(x: np.ndarray, y: np.ndarray, batch: int, epochs: int, device: torch.device) -> tuple[float, float | None]:
    """(a): seconds for ``epochs`` timed epochs after one warm-up epoch, and the peak memory."""
    from pipeline.nets import build_net

    reset_memory(device)
    torch.manual_seed(SEED)
    model = build_net(spec()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    generator = torch.Generator().manual_seed(SEED)

    def epoch() -> None:
        order = torch.randperm(len(ys), generator=generator).to(device)
        for i in range(0, len(ys), batch):
            idx = order[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    sync(device)
    seconds = time.perf_counter() - start
    memory = peak_memory(device)
    del model, optimizer, xs, ys
    return seconds, memory


def write_scaled(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The scale stage's image output: ``<split>.npy`` inputs and ``<split>.parquet`` labels (val: 1%)."""
    from pipeline.io import write_json
    from pipeline.preprocess.encoders import Encoders

    n_val = max(len(y) // 100, 1)
    for name, rows in (("train", slice(None)), ("val", slice(0, n_val))):
        np.save(folder / f"{name}.npy", x[rows])
        pd.DataFrame({"label": y[rows]}).to_parquet(folder / f"{name}.parquet", index=False)
    encoders = Encoders.passthrough(tuple(x.shape[1:]), np.unique(y).tolist())
    write_json(folder / "encoder.json", encoders.to_dict())


def pipeline_fit(folder: Path, batch: int, epochs: int, device: torch.device) -> float:
    """(b): seconds of the pipeline's ``fit`` for ``epochs`` epochs (validation on 1% included)."""
    from pipeline.config import parse_params
    from pipeline.training.fit import fit

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seed"] = SEED
    raw["data"].update(source="digits", target="label")
    raw["model"].update(kind="cnn", hidden=HIDDEN, activation="relu", dropout=0.0)
    raw["model"]["cnn"].update(channels=CHANNELS, batch_norm=True)
    raw["train"].update(optimizer="adam", lr=LR, batch_size=batch, max_epochs=epochs, checkpoint_every=0,
                        accelerator="gpu" if device.type == "cuda" else "cpu")
    raw["train"]["early_stopping"].update(patience=epochs + 1)
    params = parse_params(raw)
    sync(device)
    start = time.perf_counter()
    fit(params, folder, n_outputs=CLASSES)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2_000_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import pipeline.training.fit  # noqa: F401 - sets CUBLAS_WORKSPACE_CONFIG before CUDA starts, as the stage does

    # both sides as the pipeline trains: deterministic algorithms, and one CPU thread (train.cpu_threads)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    made = time.perf_counter()
    x, y = make_images(args.images)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.images:,} images 1x28x28 ({x.nbytes / 2**30:.1f} GiB), CNN {CHANNELS} + {HIDDEN}, Adam, "
          f"{args.epochs} timed epochs; {name}; torch {torch.__version__} (data made in "
          f"{time.perf_counter() - made:.0f} s)")
    print(f"{'batch':>6} {'a: loop samples/s':>18} {'b: pipeline samples/s':>22} {'b/a':>5} "
          f"{'a: peak GiB':>11} {'b: peak GiB':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_scaled(folder, x, y)
        n_train = len(y)
        for batch in args.batch_sizes:
            a_seconds, a_memory = hand_loop(x, y, batch, args.epochs, device)
            a_rate = n_train * args.epochs / a_seconds
            pipeline_fit(folder, batch, 1, device)  # warm-up, as (a) had
            reset_memory(device)
            # the pipeline's epochs include a validation pass over 1% of the rows: counted as time, not samples
            b_seconds = pipeline_fit(folder, batch, args.epochs, device)
            b_memory = peak_memory(device)
            b_rate = n_train * args.epochs / b_seconds
            memory = ("-", "-") if a_memory is None else (f"{a_memory:.2f}", f"{b_memory:.2f}")
            print(f"{batch:>6} {a_rate:>18,.0f} {b_rate:>22,.0f} {b_rate / a_rate:>5.2f} {memory[0]:>11} "
                  f"{memory[1]:>11}", flush=True)


if __name__ == "__main__":
    main()
