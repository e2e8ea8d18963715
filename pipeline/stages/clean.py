"""Stage clean: handle missing values and class imbalance, both learned from the train split only.

Sequences are cleaned a series at a time: gaps may be filled along time within their series, incomplete
series are eliminated whole, and rebalancing draws whole series. Images have no missing values (ingest refuses
non-finite pixels) and are rebalanced with their labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import CleanConfig, Params, load_params, require_imbalance
from pipeline.errors import run_main
from pipeline.io import atomic_dir, write_json
from pipeline.modality import Images, Modality, for_schema, write_arrays
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.profile import class_counts
from pipeline.preprocess.rebalance import (
    class_prior, class_weights, rebalance, resample_positions, smote, smote_arrays,
)
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import SPLITS, read_schema, read_splits, stage_args, write_splits

COPY = "~"  # an upsampled copy of series "s7" becomes series "s7~1", "s7~2", ...


def _balance(natural: dict[str, int] | None, after: dict[str, int] | None, weights: dict[str, float] | None,
             correct: bool) -> dict[str, Any]:
    """The class balance of the train split as drawn (``natural``) and as training sees it (resampled and
    weighted), and whether the model corrects its probabilities from the one to the other (train bundles it)."""
    if natural is None or after is None:
        return {"class_prior": None, "prior_correction": False}
    prior = {"natural": class_prior(natural), "trained": class_prior(after, weights)}
    moved = any(abs(prior["natural"][c] - prior["trained"][c]) > 1e-12 for c in natural)
    return {"class_prior": prior, "prior_correction": bool(correct and moved)}


def _typed(frame: pd.DataFrame, schema: Schema, name: str) -> pd.DataFrame:
    """Features as serving types them (:meth:`Schema.coerce`), with the target alongside."""
    out = for_schema(schema).with_ids(schema.coerce(frame, f"{name} split"), frame)
    out[schema.target] = frame[schema.target]
    return out


def _imputer(config: CleanConfig, seed: int, series: str | None = None) -> Imputer:
    return Imputer(
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
        series=series,
    )


def rebalance_series(frame: pd.DataFrame, series: str, target: str, strategy: str, seed: int) -> pd.DataFrame:
    """Resample whole series; an upsampled copy gets a new id (``<id>~<k>``) so it stays a series of its own."""
    labels = seq.series_labels(frame, series, target)
    positions = resample_positions(labels.to_numpy(), strategy, seed)
    if strategy in ("none", "class_weight"):
        return frame.reset_index(drop=True)
    groups = dict(tuple(frame.groupby(series, sort=False)))
    seen: dict[str, int] = {}
    parts = []
    for position in positions:
        name = labels.index[position]
        copy = seen.get(name, 0)
        seen[name] = copy + 1
        part = groups[name]
        if copy:
            part = part.assign(**{series: f"{name}{COPY}{copy}"})
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _impute_splits(
    typed: dict[str, pd.DataFrame | None], imputer: Imputer, modality: Modality, drop_rows: bool
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Apply the fitted imputer to every typed split (train less its incomplete rows with ``drop_rows``).

    Each typed split is released from ``typed`` once cleaned, so only one extra copy is held at a time.

    Returns:
        The cleaned splits and the report of what was dropped and filled.
    """
    train = typed["train"]
    if drop_rows:
        train = train.loc[imputer.complete(train)]  # sequences: whole series, as the imputer learned from
    kept = imputer.numeric_ + imputer.categorical_
    series = modality.series
    report: dict[str, Any] = {
        "columns_dropped": imputer.dropped_,
        "indicator_columns": imputer.indicator_columns_,
        "train_rows_dropped_incomplete": int(len(typed["train"]) - len(train)),
        **({"train_series_dropped_incomplete": int(typed["train"][series].nunique() - train[series].nunique())}
           if modality.by_series else {}),
        "filled": {
            name: {c: int(n) for c, n in frame[kept].isna().sum().items() if n}
            for name, frame in {**typed, "train": train}.items()
        },
    }
    cleaned = {}
    for name in ("train", "val", "test"):  # each typed split released once cleaned
        cleaned[name] = imputer.transform(train if name == "train" else typed[name])
        typed[name] = None
        if name == "train":
            train = None
    return cleaned, report


def _rebalance_train(
    train: pd.DataFrame, modality: Modality, imputer: Imputer, config: CleanConfig, imbalance: str, seed: int
) -> pd.DataFrame:
    """Resample the cleaned train split by ``imbalance``: whole series for sequences, SMOTE or rows otherwise."""
    target = modality.target
    if modality.by_series:  # never smote: params.yaml refuses it with sequence data (pipeline.config.Params)
        return rebalance_series(train, str(modality.series), target, imbalance, seed)
    if imbalance == "smote":  # the 0/1 indicator flags vote like categories rather than being interpolated
        return smote(train, target, imputer.numeric_, imputer.categorical_out_ + imputer.indicator_columns_,
                     config.smote_neighbors, seed)
    return rebalance(train, target, imbalance, seed)


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
    modality = for_schema(schema)
    classification = schema.task == "classification"
    labels = modality.labels
    natural = class_counts(labels(splits["train"])) if classification else None  # before any row is dropped
    imputer = _imputer(config, seed, modality.series)
    # the typed form serving gives raw rows (dates as days, categories as text), so both paths agree
    typed = {name: _typed(frame, schema, name) for name, frame in splits.items()}
    imputer.fit(typed["train"], schema.numeric, schema.categorical)
    cleaned, report = _impute_splits(typed, imputer, modality, config.drop_rows)
    imbalance = config.imbalance if classification else "none"  # regression has no classes to balance
    before = class_counts(labels(cleaned["train"])) if classification else None
    cleaned["train"] = _rebalance_train(cleaned["train"], modality, imputer, config, imbalance, seed)
    after = class_counts(labels(cleaned["train"])) if classification else None
    weights = class_weights(labels(cleaned["train"])) if imbalance == "class_weight" else None
    report.update(
        imbalance=imbalance,
        train_class_counts_before=before,
        train_class_counts_after=after,
        class_weight=weights,
        class_counts_unit=modality.unit,
        **_balance(natural, after, weights, config.prior_correction),
    )
    return cleaned, imputer, report


def clean_images(
    splits: dict[str, pd.DataFrame], images: dict[str, np.ndarray], schema: Schema, config: CleanConfig, seed: int
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], Imputer, dict[str, Any]]:
    """Rebalance the train images (val and test keep theirs); there is nothing to impute.

    The fitted imputer has no columns; it is saved all the same, so every model bundle has the same parts.
    """
    imputer = _imputer(config, seed).fit(splits["train"], [], [])
    classification = schema.task == "classification"
    imbalance = config.imbalance if classification else "none"
    train, x = splits["train"], images["train"]
    before = class_counts(train[schema.target]) if classification else None
    if imbalance == "smote":
        x, y = smote_arrays(x, train[schema.target].to_numpy(), config.smote_neighbors, seed)
        train = pd.DataFrame({schema.target: pd.Series(y).astype(train[schema.target].dtype)})
    else:
        positions = resample_positions(train[schema.target].to_numpy(), imbalance, seed)
        train, x = train.iloc[positions].reset_index(drop=True), x[positions]
    after = class_counts(train[schema.target]) if classification else None
    weights = class_weights(train[schema.target]) if imbalance == "class_weight" else None
    report: dict[str, Any] = {
        "columns_dropped": [],
        "indicator_columns": [],
        "train_rows_dropped_incomplete": 0,
        "filled": {name: {} for name in SPLITS},
        "imbalance": imbalance,
        "train_class_counts_before": before,
        "train_class_counts_after": after,
        "class_weight": weights,
        "class_counts_unit": Images.unit,
        **_balance(before, after, weights, config.prior_correction),
    }
    return {**splits, "train": train}, {**images, "train": x}, imputer, report


def clean_folder(params: Params, raw: Path, split: Path, out: Path) -> dict[str, Any]:
    """Clean the split folder ``split`` into ``out`` (written atomically) as the stage does, without printing.

    ``clean.imbalance: auto`` is resolved for the task ingest found (``raw``'s schema). The search and
    cross-validation commands call this in-process, once per data configuration.

    Returns:
        The report written to ``out/report.json``.
    """
    schema = read_schema(raw)
    config = require_imbalance(params.clean, schema.task)  # 'auto' resolved for the task ingest found
    images = for_schema(schema).read_arrays(split, SPLITS)
    arrays = None
    if images is not None:
        cleaned, arrays, imputer, report = clean_images(read_splits(split), images, schema, config, params.seed)
    else:
        cleaned, imputer, report = clean(read_splits(split), schema, config, params.seed)
    with atomic_dir(out) as tmp:
        write_splits(tmp, cleaned)
        write_arrays(tmp, arrays)
        write_json(tmp / "imputer.json", imputer.to_dict())
        write_json(tmp / "report.json", report)
    return report


def summary(report: dict[str, Any], params: Params, images: bool) -> str:
    """The line the stage prints after ``clean: ``, from :func:`clean_folder`'s report (``images``: the data are
    images, which have nothing to fill)."""
    filled = sum(n for split in report["filled"].values() for n in split.values())
    extra = []
    if report["columns_dropped"]:
        extra.append(f"dropped columns {report['columns_dropped']}")
    if report.get("train_series_dropped_incomplete"):
        extra.append(f"dropped {report['train_series_dropped_incomplete']} incomplete train series")
    elif report["train_rows_dropped_incomplete"]:
        extra.append(f"dropped {report['train_rows_dropped_incomplete']} incomplete train rows")
    if report["class_weight"]:
        extra.append(f"class weights {({k: round(v, 3) for k, v in report['class_weight'].items()})}")
    unit = report["class_counts_unit"]
    # with classes to balance, the report's imbalance is clean.imbalance as resolved for the task
    balance = (f"train {unit} per class {report['train_class_counts_before']} -> {report['train_class_counts_after']} "
               f"({report['imbalance']})") if report["train_class_counts_before"] else "no classes to balance"
    if report["prior_correction"]:
        balance += "; predictions corrected back to the natural class balance (clean.prior_correction)"
    fills = ("no missing values in images" if images else
             f"filled {filled} missing values ({params.clean.numeric}/{params.clean.categorical})")
    return f"{fills}; {balance}" + "".join(f"; {e}" for e in extra)


def main() -> None:
    """Clean ``--split`` into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "split", "out")
    params = load_params(args.params)
    report = clean_folder(params, args.raw, args.split, args.out)
    print(f"clean: {summary(report, params, for_schema(read_schema(args.raw)).arrays)}")


if __name__ == "__main__":
    run_main(main, "clean")
