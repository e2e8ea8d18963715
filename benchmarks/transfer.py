"""Transfer learning: a second task learnt from 50, 100 and 200 labelled images, from scratch or from a CNN trained
on the first.

The bundled digits (1,797 8x8 images) are cut once, by a fixed seed, into three disjoint sets: 1,000 images for the
*source* task (the ten digits; the digits preset's CNN, trained through the pipeline's own stage functions), 400
*test* images for the second task, and a pool of 397 from which each seed draws its labelled images. The second
task is odd/even: a label set the source never saw. So no image the source trained on is ever a test image of the
second task, or one of its labelled images.

For every size ``n`` and seed, the ``n`` labelled images are split into train and val in the proportions the default
``split`` keeps (val 0.15 : train 0.65), stratified; the 400 test images are the test split. Clean and scale are
fitted on that train split (the second task's own, as ``train.init_from`` uses them); then four trainings, each with
the default params and the digits preset, and the seed as ``seed``:

- ``scratch``: random initial weights;
- ``frozen``: the source's weights, encoder frozen (``train.freeze: encoder``), a fresh two-class output layer;
- ``whole``: the source's weights, every layer trained (``train.freeze: none``);
- ``whole_0.1``: the same, the loaded layers at a tenth of the rate (``train.loaded_lr_factor: 0.1``).

Each is scored by evaluate's own metrics on the 400 test images, and the table gives the mean and standard
deviation of test accuracy over the seeds. Everything runs in-process through the functions the stages and the
search call (:func:`pipeline.stages.train.train`, the bundle evaluate loads); no MLflow run or registry is involved:
the source's spec and weights are handed over as ``train.init_from`` hands over a registered version's.

    .venv/bin/python benchmarks/transfer.py                        # 5 seeds x 50, 100, 200 images (minutes)
    .venv/bin/python benchmarks/transfer.py --sizes 50 --seeds 0 1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pipeline

from pipeline.config import Params, load_params  # noqa: E402
from pipeline.presets import load_presets, overlay  # noqa: E402
from pipeline.tuning.prepare import Prepared  # noqa: E402

CUT_SEED = 20261203  # fixes which images are the source's, the test set and the pool: never varied
SOURCE, TEST = 1000, 400
VAL_SHARE = 0.15 / (0.15 + 0.65)  # the default split's val : train proportion, applied to the labelled images
# each variant's params over the defaults (``None``: from scratch); every fine-tuning starts from the source
VARIANTS: dict[str, dict[str, Any] | None] = {
    "scratch": None,
    "frozen": {"train.freeze": "encoder"},
    "whole": {"train.freeze": "none"},
    "whole_0.1": {"train.freeze": "none", "train.loaded_lr_factor": 0.1},
}


def digits_cut() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The bundled digits and the positions of the source set, the second task's test set and its pool."""
    from pipeline.sources import IMAGE_LOADERS

    x, y = IMAGE_LOADERS["digits"]()
    order = np.random.default_rng(CUT_SEED).permutation(len(x))
    return x, y, {"source": order[:SOURCE], "test": order[SOURCE:SOURCE + TEST], "pool": order[SOURCE + TEST:]}


def params_for(target: str, seed: int, tuning: dict[str, Any] | None) -> Params:
    """params.yaml with the digits preset, ``data.target`` and ``seed`` set, and (for a fine-tuning) the source
    and ``tuning``'s keys."""
    import yaml

    raw = overlay(yaml.safe_load((ROOT / "params.yaml").read_text()), load_presets(ROOT / "presets.yaml")["digits"])
    raw = overlay(raw, {"data.target": target, "seed": seed})
    if tuning is not None:
        raw = overlay(raw, {"train.init_from": "models:/digits-source/1", **tuning})
    path = Path(tempfile.mkstemp(suffix=".yaml")[1])
    try:
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_params(path)
    finally:
        path.unlink()


def prepare(work: Path, params: Params, x: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray]) -> Prepared:
    """Ingest ``x`` with ``labels`` as the stage does, cut it into ``parts`` (positions), then clean and scale."""
    from pipeline.io import write_json, write_npy, write_parquet
    from pipeline.modality import write_arrays
    from pipeline.stages.clean import clean_folder
    from pipeline.stages.common import write_splits
    from pipeline.stages.ingest import ingest_images
    from pipeline.stages.scale import scale_folder

    frame, images, schema, _ = ingest_images(x, labels, params.data.target, "benchmark", "classification")
    if len(frame) != len(x):
        raise SystemExit(f"transfer.py: ingest dropped {len(x) - len(frame)} images; expected none")
    raw, split = work / "raw", work / "split"
    for folder in (raw, split):
        folder.mkdir(parents=True)
    write_parquet(raw / "data.parquet", frame)
    write_npy(raw / "images.npy", images)
    write_json(raw / "schema.json", schema.to_dict())
    write_splits(split, {name: frame.iloc[rows].reset_index(drop=True) for name, rows in parts.items()})
    write_arrays(split, {name: images[rows] for name, rows in parts.items()})
    clean_folder(params, raw, split, work / "clean")
    scale_folder(params, raw, work / "clean", work / "scaled")
    return Prepared(raw, split, work / "clean", work / "scaled")


def train_val(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the train and val parts of ``labels``, stratified, val at :data:`VAL_SHARE`."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(labels)), test_size=VAL_SHARE, stratify=labels, random_state=seed)


def fit_and_test(params: Params, prepared: Prepared, work: Path, parent: Any = None) -> tuple[dict[str, float], Any]:
    """Train as the train stage does (from ``parent`` when given), and evaluate's metrics on the test split."""
    from pipeline.bundle import ModelBundle, write_bundle
    from pipeline.evaluation.scores import split_metrics
    from pipeline.stages.train import TrainFolders, train

    folders = TrainFolders(prepared.raw, prepared.clean, prepared.scaled, work / "checkpoints")
    with contextlib.redirect_stdout(io.StringIO()):  # the output-layer note, once per fine-tuning
        result = train(params, folders, parent=parent)
    write_bundle(work / "model", result.spec, result.state, prepared.raw, prepared.clean, prepared.scaled,
                 result.inputs.decision, chunk=result.params.train.eval_chunk)
    metrics = split_metrics(ModelBundle.load(work / "model"), prepared.scaled, "test", params.data.target)
    return {"accuracy": float(metrics["accuracy"]), "epochs": result.kept.epochs}, result


def source_model(work: Path, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[Any, float]:
    """The source network (the digits preset on the source set, split as the split stage splits) and its test
    accuracy on the source task."""
    from pipeline.stages.split import assign
    from pipeline.training.transfer import Parent

    params = params_for("digit", CUT_SEED % 1000, None)
    parts = assign(y[rows], params.split.val, params.split.test, params.seed)
    prepared = prepare(work / "source", params, x[rows], y[rows].astype(str), parts)
    scored, result = fit_and_test(params, prepared, work / "source")
    return Parent("models:/digits-source/1", result.spec, result.state), scored["accuracy"]


def second_task(work: Path, x: np.ndarray, parity: np.ndarray, cut: dict[str, np.ndarray], n: int, seed: int,
                parent: Any) -> dict[str, dict[str, float]]:
    """One size and seed: draw ``n`` labelled images from the pool, and train each variant on them."""
    labelled = np.random.default_rng(seed).choice(cut["pool"], n, replace=False)
    train_rows, val_rows = train_val(parity[labelled], seed)
    rows = np.concatenate([labelled, cut["test"]])
    parts = {"train": np.sort(train_rows), "val": np.sort(val_rows), "test": np.arange(n, n + len(cut["test"]))}
    folder = work / f"n{n}-seed{seed}"
    prepared = prepare(folder, params_for("parity", seed, None), x[rows], parity[rows], parts)
    out = {}
    for variant, tuning in VARIANTS.items():
        started = time.perf_counter()
        scored, _ = fit_and_test(params_for("parity", seed, tuning), prepared, folder / variant,
                                 None if tuning is None else parent)
        out[variant] = {**scored, "seconds": time.perf_counter() - started}
    return out


def report(rows: list[dict[str, Any]], sizes: list[int], seeds: list[int]) -> None:
    print(f"\ntest accuracy on {TEST} held-out images (odd/even), mean +- std over seeds {seeds}:")
    tuned = [v for v in VARIANTS if v != "scratch"]
    print(f"{'images':>6}  " + "  ".join(f"{v:>15}" for v in VARIANTS) + "  " +
          "  ".join(f"{f'{v} > scratch':>18}" for v in tuned))
    for n in sizes:
        mine = [r for r in rows if r["n"] == n]
        cells = []
        for variant in VARIANTS:
            values = np.array([r[variant]["accuracy"] for r in mine])
            cells.append(f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}")
        wins = [sum(r[v]["accuracy"] > r["scratch"]["accuracy"] for r in mine) for v in tuned]
        print(f"{n:>6}  " + "  ".join(f"{c:>15}" for c in cells) + "  " +
              "  ".join(f"{f'{w}/{len(mine)} seeds':>18}" for w in wins))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    x, y, cut = digits_cut()
    if max(args.sizes) > len(cut["pool"]):
        raise SystemExit(f"--sizes: expected at most {len(cut['pool'])} labelled images (the pool), "
                         f"got {max(args.sizes)}")
    parity = np.where(y % 2 == 1, "odd", "even")
    rows = []
    with tempfile.TemporaryDirectory(prefix="transfer-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        parent, source_accuracy = source_model(work, x, y, cut["source"])
        print(f"source: digits CNN on {SOURCE} images, test accuracy {source_accuracy:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        for n in args.sizes:
            for seed in args.seeds:
                row = {"n": n, "seed": seed, **second_task(work, x, parity, cut, n, seed, parent)}
                rows.append(row)
                print(f"n={n:<4} seed={seed}  " + "  ".join(
                    f"{v} {row[v]['accuracy']:.3f} ({row[v]['epochs']} epochs, {row[v]['seconds']:.0f} s)"
                    for v in VARIANTS), flush=True)
    report(rows, args.sizes, args.seeds)
    if args.json:
        args.json.write_text(json.dumps({"source_accuracy": source_accuracy, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
