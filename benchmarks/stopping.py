"""Which epoch to keep: stopping rules compared on the test split, one training per split.

Each seed's project (a dataset of ``benchmarks/suite.py``, the default params plus any ``--set``) runs its data
stages with ``dvc repro scale``; then the network trains in-process through all of its ``max_epochs`` (patience
set to ``max_epochs``, so nothing stops it) while a probe scores every epoch on val and test. Stopping rules are
applied to the recorded epochs afterwards: early stopping changes when training ends, never what an epoch
computes, so a rule's figures are what a real run with that rule would report (the ``val_loss`` rule is the
pipeline's own and reproduces ``quality.py --defaults``). Training is deterministic, so one training per split
serves every rule.

    .venv/bin/python benchmarks/stopping.py --dataset rare --seeds 42 1 2 3
    .venv/bin/python benchmarks/stopping.py --dataset rare --seeds 42 1 2 3 --set train.lr=0.003
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from defaults import parse_sets, write
from quality import BIN, child_env, make_project
from suite import SUITE

Epoch = dict[str, float]


def probe(scaled: Path, target: str) -> tuple[Any, list[Epoch]]:
    """A Lightning callback that scores the net on val and test after every validation, and its records."""
    import lightning as L
    import torch
    from sklearn.metrics import f1_score, log_loss

    from pipeline.training.arrays import load_xy

    splits = {name: load_xy(scaled, name, target) for name in ("val", "test")}
    records: list[Epoch] = []

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            record: Epoch = {"epoch": trainer.current_epoch}
            was = module.net.training
            module.net.eval()
            with torch.no_grad():
                for name, (x, y) in splits.items():
                    p = torch.softmax(module.net(x), 1).numpy()
                    truth, pred = y.numpy(), p.argmax(1)
                    record[f"{name}_loss"] = float(log_loss(truth, p, labels=list(range(p.shape[1]))))
                    record[f"{name}_acc"] = float((pred == truth).mean())
                    record[f"{name}_f1"] = float(f1_score(truth, pred, average="macro"))
            module.net.train(was)
            records.append(record)

    return Probe(), records


def train_all_epochs(project: Path) -> tuple[list[Epoch], int, float]:
    """Train ``project``'s configured net through every epoch; its records, patience and val majority share."""
    from pipeline.config import load_params
    from pipeline.config.auto import budget
    from pipeline.io import read_parquet
    from pipeline.training.fit import fit
    from pipeline.training.arrays import load_xy

    params = load_params(project / "params.yaml")
    scaled = project / "data" / "scaled"
    target = params.data.target
    n_train = len(read_parquet(scaled / "train.parquet"))
    sized = budget(params.train, n_train)
    everything = sized.model_copy(update={"early_stopping": sized.early_stopping.model_copy(
        update={"patience": sized.max_epochs}), "checkpoint_every": 0})
    callback, records = probe(scaled, target)
    y_val = load_xy(scaled, "val", target)[1].numpy()
    n_outputs = int(max(load_xy(scaled, "train", target)[1].max().item(), y_val.max()) + 1)
    fit(params.model_copy(update={"train": everything}), scaled, n_outputs, probes=(callback,))
    return records, int(sized.early_stopping.patience), float(np.bincount(y_val).max() / len(y_val))


def val_loss(records: list[Epoch], patience: int, majority: float, min_delta: float = 1e-4) -> Epoch:
    """The pipeline's rule: the best val/loss (by more than ``min_delta``), stopping ``patience`` epochs later."""
    best: Epoch | None = None
    for record in records:
        if best is None or record["val_loss"] < best["val_loss"] - min_delta:
            best = record
        if record["epoch"] - best["epoch"] >= patience:
            break
    assert best is not None
    return best


def beats_majority(records: list[Epoch], patience: int, majority: float) -> Epoch:
    """The best val/loss among the epochs (up to where the pipeline stops) whose val accuracy beats always
    answering the majority class; the pipeline's choice when none does."""
    chosen = val_loss(records, patience, majority)
    end = next((r["epoch"] for r in records if r["epoch"] - chosen["epoch"] >= patience), records[-1]["epoch"])
    seen = [r for r in records if r["epoch"] <= end and r["val_acc"] > majority]
    return min(seen, key=lambda r: r["val_loss"]) if seen else chosen


RULES: dict[str, Callable[[list[Epoch], int, float], Epoch]] = {"val_loss": val_loss,
                                                                 "beats_majority": beats_majority}


def project_for(name: str, seed: int, sets: dict[str, Any], work: Path) -> Path:
    """A project for one split of ``name``, its data stages run."""
    dataset = SUITE[name]()
    source = f"inputs/{name}{dataset.suffix}"
    overrides = {"data.source": source, "data.target": dataset.target, "seed": seed, **sets}
    project = make_project(work / f"{name}-{seed}", overrides, prepare=lambda p: write(dataset, p / source))
    subprocess.run([str(BIN / "dvc"), "repro", "scale"], cwd=project, env=child_env(), check=True,
                   capture_output=True)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(SUITE), help="a classification table of the suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="splits (params.yaml seed values)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted params.yaml key (value read as YAML) for every split; repeatable")
    args = parser.parse_args()
    sets = parse_sets(args.set)
    results: dict[str, list[Epoch]] = {rule: [] for rule in RULES}
    with tempfile.TemporaryDirectory(prefix="stopping-") as work:
        for seed in args.seeds:
            records, patience, majority = train_all_epochs(project_for(args.dataset, seed, sets, Path(work)))
            for rule, choose in RULES.items():
                results[rule].append(choose(records, patience, majority))
    extra = "; " + ", ".join(args.set) if args.set else ""
    print(f"{args.dataset}, splits {' / '.join(map(str, args.seeds))}{extra}")
    for rule, picks in results.items():
        epochs = " / ".join(str(int(p["epoch"])) for p in picks)
        accuracy = " / ".join(f"{p['test_acc']:.4f}" for p in picks)
        f1 = " / ".join(f"{p['test_f1']:.3f}" for p in picks)
        print(f"  {rule:15s} epoch {epochs}; test accuracy {accuracy}; macro F1 {f1}")

if __name__ == "__main__":
    main()
