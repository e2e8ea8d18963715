"""Stage clean: impute missing values and rebalance classes, both learned from the train split only."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.config import CleanConfig, load_params
from pipeline.errors import run_main
from pipeline.io import atomic_dir, write_json
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.rebalance import rebalance
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import read_schema, read_splits, stage_args, write_splits


def clean(
    splits: dict[str, pd.DataFrame], schema: Schema, config: CleanConfig, seed: int
) -> tuple[dict[str, pd.DataFrame], Imputer, dict[str, Any]]:
    """Fit the imputer on train, apply it to every split, then rebalance train alone.

    Val and test keep their natural class balance: resampling them would misstate every metric, and an
    upsampled copy of a test row in train would leak the answer.

    Returns:
        The cleaned splits, the fitted imputer, and a report of values filled and class counts.
    """
    imputer = Imputer(config.numeric, config.categorical).fit(splits["train"], schema.numeric, schema.categorical)
    cleaned = {name: imputer.transform(frame) for name, frame in splits.items()}
    before = cleaned["train"][schema.target].value_counts().sort_index()
    cleaned["train"] = rebalance(cleaned["train"], schema.target, config.imbalance, seed)
    after = cleaned["train"][schema.target].value_counts().sort_index()
    report = {
        "filled": {
            name: {c: int(n) for c, n in frame[imputer.columns_].isna().sum().items() if n}
            for name, frame in splits.items()
        },
        "imbalance": config.imbalance,
        "train_class_counts_before": {str(k): int(v) for k, v in before.items()},
        "train_class_counts_after": {str(k): int(v) for k, v in after.items()},
    }
    return cleaned, imputer, report


def main() -> None:
    """Clean ``--split`` into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "split", "out")
    params = load_params(args.params)
    cleaned, imputer, report = clean(read_splits(args.split), read_schema(args.raw), params.clean, params.seed)
    with atomic_dir(args.out) as out:
        write_splits(out, cleaned)
        write_json(out / "imputer.json", imputer.to_dict())
        write_json(out / "report.json", report)
    filled = sum(n for split in report["filled"].values() for n in split.values())
    print(f"clean: filled {filled} missing values; train classes {report['train_class_counts_before']} -> "
          f"{report['train_class_counts_after']} ({params.clean.imbalance})")


if __name__ == "__main__":
    run_main(main, "clean")
