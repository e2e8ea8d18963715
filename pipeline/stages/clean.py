"""Stage clean: handle missing values and class imbalance, both learned from the train split only."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.config import CleanConfig, load_params
from pipeline.errors import run_main
from pipeline.io import atomic_dir, write_json
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.rebalance import class_weights, rebalance, smote
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import read_schema, read_splits, stage_args, write_splits


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


def _typed(frame: pd.DataFrame, schema: Schema, name: str) -> pd.DataFrame:
    """Features as serving types them (:meth:`Schema.coerce`), with the target alongside."""
    out = schema.coerce(frame, f"{name} split")
    out[schema.target] = frame[schema.target]
    return out


def clean(
    splits: dict[str, pd.DataFrame], schema: Schema, config: CleanConfig, seed: int
) -> tuple[dict[str, pd.DataFrame], Imputer, dict[str, Any]]:
    """Fit the imputer on train, apply it to every split, then rebalance train alone.

    With ``drop_rows`` only train loses its incomplete rows: val and test keep every row (filled with the
    train statistics) so that strategies are scored on the same rows, and the model can still serve rows
    with gaps. Val and test keep their natural class balance: resampling them would misstate every metric,
    and an upsampled copy of a test row in train would leak the answer.

    Returns:
        The cleaned splits, the fitted imputer, and a report of what was dropped, filled and resampled,
        including the loss weights per class when ``imbalance`` is ``class_weight``.
    """
    imputer = Imputer(
        numeric=config.numeric,
        categorical=config.categorical,
        fill_value=config.fill_value,
        fill_category=config.fill_category,
        max_missing=config.max_missing,
        drop_rows=config.drop_rows,
        indicators=config.indicators,
        knn_neighbors=config.knn_neighbors,
        knn_reference_rows=config.knn_reference_rows,
        seed=seed,
    )
    # the typed form serving gives raw rows (dates as days, categories as text), so both paths agree
    splits = {name: _typed(frame, schema, name) for name, frame in splits.items()}
    imputer.fit(splits["train"], schema.numeric, schema.categorical)
    train = splits["train"]
    if config.drop_rows:
        train = train.loc[imputer.complete(train)]
    kept = imputer.numeric_ + imputer.categorical_
    report: dict[str, Any] = {
        "columns_dropped": imputer.dropped_,
        "indicator_columns": imputer.indicator_columns_,
        "train_rows_dropped_incomplete": int(len(splits["train"]) - len(train)),
        "filled": {
            name: {c: int(n) for c, n in frame[kept].isna().sum().items() if n}
            for name, frame in {**splits, "train": train}.items()
        },
    }
    cleaned = {"train": imputer.transform(train), "val": imputer.transform(splits["val"]),
               "test": imputer.transform(splits["test"])}
    classification = schema.task == "classification"
    imbalance = config.imbalance if classification else "none"  # regression has no classes to balance
    before = _counts(cleaned["train"][schema.target]) if classification else None
    if imbalance == "smote":  # the 0/1 indicator flags vote like categories rather than being interpolated
        cleaned["train"] = smote(cleaned["train"], schema.target, imputer.numeric_,
                                 imputer.categorical_out_ + imputer.indicator_columns_, config.smote_neighbors, seed)
    else:
        cleaned["train"] = rebalance(cleaned["train"], schema.target, imbalance, seed)
    ignored = not classification and config.imbalance != "none"
    report.update(
        imbalance=f"none (clean.imbalance = {config.imbalance!r} is ignored for a regression task: it has no "
        "classes)" if ignored else imbalance,
        train_class_counts_before=before,
        train_class_counts_after=_counts(cleaned["train"][schema.target]) if classification else None,
        class_weight=class_weights(cleaned["train"][schema.target]) if imbalance == "class_weight" else None,
    )
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
    extra = []
    if report["columns_dropped"]:
        extra.append(f"dropped columns {report['columns_dropped']}")
    if report["train_rows_dropped_incomplete"]:
        extra.append(f"dropped {report['train_rows_dropped_incomplete']} incomplete train rows")
    if report["class_weight"]:
        extra.append(f"class weights {({k: round(v, 3) for k, v in report['class_weight'].items()})}")
    balance = (f"train classes {report['train_class_counts_before']} -> {report['train_class_counts_after']} "
               f"({params.clean.imbalance})") if report["train_class_counts_before"] else report["imbalance"]
    print(f"clean: filled {filled} missing values ({params.clean.numeric}/{params.clean.categorical}); {balance}"
          + "".join(f"; {e}" for e in extra))


if __name__ == "__main__":
    run_main(main, "clean")
