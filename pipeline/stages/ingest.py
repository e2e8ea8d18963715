"""Stage ingest: load the source, check it against params, drop rows without a target and exact duplicates.

Writes ``data.parquet`` (the rows every later stage and ``predict`` start from), ``schema.json`` (feature
kinds) and ``profile.json`` (rows, dtypes, missing values, class counts, what was dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline import sources
from pipeline.config import load_params
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_dir, write_json, write_parquet
from pipeline.preprocess.schema import Schema, as_category, column_kind, detect, infer_task
from pipeline.stages.common import stage_args


def _duplicated(frame: pd.DataFrame) -> pd.Series:
    """``frame.duplicated()``, comparing row hashes first and only rows whose hashes collide in full."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    candidates = hashes.duplicated(keep=False)
    out = pd.Series(False, index=frame.index)
    if candidates.any():
        out[candidates] = frame.loc[candidates].duplicated()
    return out


def ingest(
    frame: pd.DataFrame, target: str, source: str = "data", drop: Sequence[str] = (), task: str = "auto"
) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """Validate a loaded table, drop the rows no later stage can use, and leave out non-feature columns.

    Exact duplicate rows are judged on the table as loaded. Columns named in ``drop`` and near-unique text
    columns (identifiers, names, free text: one-hot encoding them would make a feature per row) are left
    out, and the profile says which and why. ISO date columns are kept as kind ``date``.

    Args:
        frame: The table as loaded.
        target: The label column (``data.target``).
        source: A name for the table in messages.
        drop: Columns to leave out (``data.drop``).
        task: ``classification``, ``regression`` or ``auto`` (inferred from the target; the profile says why).

    Returns:
        The kept rows with a fresh index, their schema, and a profile of what was seen and dropped.

    Raises:
        PipelineError: If the target or a ``drop`` column is absent, or fewer than two classes remain.
    """
    if target not in frame.columns:
        raise PipelineError(f"data.target = {target!r}: column not found in {source}; expected one of {list(frame.columns)}")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise PipelineError(f"data.drop: column(s) {unknown} not found in {source}; expected some of {list(frame.columns)}")
    if target in drop:
        raise PipelineError(f"data.drop: {target!r} is data.target; expected feature columns only")
    no_target = frame[target].isna()
    if no_target.all():
        raise PipelineError(f"{source}: column {target!r}: expected some rows with a target, got none of {len(frame)}")
    numeric = frame.select_dtypes("number")
    infinite = [name for name in numeric.columns if np.isinf(numeric[name].to_numpy(dtype="float64")).any()]
    if infinite:
        raise PipelineError(
            f"{source}: column(s) {infinite} hold +/-inf; expected finite numbers (or empty cells for missing values)"
        )
    # a row missing its target cannot duplicate one that has it, so one pass over the whole frame will do
    duplicated = _duplicated(frame) & ~no_target
    kept = frame.loc[~no_target & ~duplicated].drop(columns=list(drop)).reset_index(drop=True)
    kinds = {name: detect(kept[name]) for name in kept.columns if name != target}
    identifiers = [name for name, kind in kinds.items() if kind == "identifier"]
    kept = kept.drop(columns=identifiers)
    if task == "auto":
        task, reason = infer_task(kept[target])
    else:
        reason = "set in data.task"
    if task == "regression" and column_kind(kept[target]) != "numeric":
        raise PipelineError(
            f"data.task = 'regression': column {target!r} in {source}: expected numbers, got {kept[target].dtype} values"
        )
    classes = kept[target].value_counts().sort_index()
    if task == "classification" and len(classes) < 2:
        raise PipelineError(f"{source}: column {target!r}: expected at least 2 classes, got {classes.index.tolist()}")
    if len(kept.columns) < 2:
        raise PipelineError(f"{source}: expected at least one feature column besides {target!r}, got none")
    schema = Schema(target, tuple((name, kinds[name]) for name in kept.columns if name != target), task)
    for name in schema.categorical:  # the same text form predict gives raw rows, so training and serving agree
        kept[name] = as_category(kept[name])
    profile = {
        "source": source,
        "rows_loaded": int(len(frame)),
        "rows_dropped_missing_target": int(no_target.sum()),
        "rows_dropped_duplicate": int(duplicated.sum()),
        "rows": int(len(kept)),
        "task": task,
        "task_reason": reason,
        "columns_dropped": {
            **{name: "listed in data.drop" for name in drop},
            **{name: "near-unique text (an identifier or free text), not a category" for name in identifiers},
        },
        "columns": {
            name: {
                "dtype": str(kept[name].dtype),
                "kind": "target" if name == target else kinds[name],
                "missing": int(kept[name].isna().sum()),
            }
            for name in kept.columns
        },
        "class_counts": {str(k): int(v) for k, v in classes.items()} if task == "classification" else None,
        "target_summary": None if task == "classification" else {
            k: float(v) for k, v in kept[target].describe().items() if k != "count"
        },
    }
    return kept, schema, profile


def main() -> None:
    """Load ``data.source`` and write ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "out")
    data = load_params(args.params).data
    frame = sources.load(data.source)
    kept, schema, profile = ingest(frame, data.target, data.source, data.drop, data.task)
    with atomic_dir(args.out) as out:
        write_parquet(out / "data.parquet", kept)
        write_json(out / "schema.json", schema.to_dict())
        write_json(out / "profile.json", profile)
    dropped = profile["rows_dropped_missing_target"] + profile["rows_dropped_duplicate"]
    left_out = "".join(f"; left out {name!r}: {why}" for name, why in profile["columns_dropped"].items())
    date_columns = [name for name, kind in schema.features if kind == "date"]
    dates = f"; dates as days since 1970-01-01: {date_columns}" if date_columns else ""
    target = f"classes {profile['class_counts']}" if schema.task == "classification" else (
        f"target mean {profile['target_summary']['mean']:.4g}, std {profile['target_summary']['std']:.4g}")
    print(f"ingest: {data.source}: {profile['rows']} rows, {len(schema.features)} features, {dropped} rows dropped; "
          f"task {schema.task} ({profile['task_reason']}); {target}{left_out}{dates}")


if __name__ == "__main__":
    run_main(main, "ingest")
