"""Stage split: a seeded, stratified train/validation/test split, drawn before anything is fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import load_params
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_dir, read_parquet, write_json
from pipeline.stages.common import SPLITS, read_schema, stage_args, write_splits


def split(
    frame: pd.DataFrame, target: str, val: float, test: float, seed: int, stratify: bool = True
) -> dict[str, pd.DataFrame]:
    """Split rows so that every class keeps its share in each part (or at random, without ``stratify``).

    Within each class (in sorted order, so the draw never depends on row order elsewhere) the rows are
    shuffled and ``round(n * test)`` go to test, ``round(n * val)`` to val and the rest to train. Rows keep
    their original order within each part. Regression targets are not stratified: all rows form one group.

    Args:
        frame: The rows ingest kept.
        target: The label column.
        val: Fraction for validation.
        test: Fraction for test.
        seed: Seeds the shuffle.
        stratify: Keep class shares (classification); off for regression.

    Raises:
        PipelineError: If a part would be empty or a class would be missing from train.
    """
    rng = np.random.default_rng(seed)
    labels = frame[target].to_numpy() if stratify else np.zeros(len(frame), dtype=int)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for cls in sorted(pd.unique(labels), key=str):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_test, n_val = round(len(rows) * test), round(len(rows) * val)
        if len(rows) - n_test - n_val < 1:
            raise PipelineError(
                f"split.val = {val:g}, split.test = {test:g}: "
                + (f"class {cls!r} has {len(rows)} rows" if stratify else f"{len(rows)} rows in all")
                + ", expected at least one left for train"
            )
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    out = {}
    for name, chunks in parts.items():
        rows = np.sort(np.concatenate(chunks))
        if len(rows) == 0:
            raise PipelineError(f"split.{name}: expected a non-empty {name} split from {len(frame)} rows, got 0 rows")
        out[name] = frame.iloc[rows].reset_index(drop=True)
    return out


def main() -> None:
    """Split ``--raw``'s data into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "out")
    params = load_params(args.params)
    schema = read_schema(args.raw)
    frame = read_parquet(args.raw / "data.parquet")
    classification = schema.task == "classification"
    parts = split(frame, schema.target, params.split.val, params.split.test, params.seed, stratify=classification)
    summary = {
        name: {
            "rows": len(part),
            "class_counts": {str(k): int(v) for k, v in part[schema.target].value_counts().sort_index().items()}
            if classification else None,
        }
        for name, part in parts.items()
    }
    with atomic_dir(args.out) as out:
        write_splits(out, parts)
        write_json(out / "summary.json", summary)
    print("split: " + ", ".join(f"{name} {s['rows']}" for name, s in summary.items()))


if __name__ == "__main__":
    run_main(main, "split")
