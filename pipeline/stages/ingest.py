"""Stage ingest: load the source, check it against params, drop rows without a target, count repeated rows.

Writes ``data.parquet`` (the rows every later stage and ``predict`` start from; for images only the target,
with the images themselves in ``images.npy``, float32 N x C x H x W, row for row), ``schema.json`` (modality
and feature kinds) and ``profile.json`` (rows, dtypes, missing values, class counts, repeated rows, what was
dropped). Identical rows are ordinary in tables with few, coarse columns (different people of the same sex,
age band and class): ``data.duplicates: keep`` (the default) and ``group`` keep and count them, ``drop`` keeps
only the first of each (for copies of one record).
Sequences stay in long format, one row per (series, step), sorted by series and time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline import sources
from pipeline.config import DataConfig, load_params, require_task, resolved_autos
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_dir, write_json, write_npy, write_parquet
from pipeline.modality import for_schema
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.profile import Rows, build_profile, class_counts, column_profile, resolve_target
from pipeline.preprocess.schema import Schema, as_category, column_kind, detect
from pipeline.stages.common import stage_args


def _duplicated(frame: pd.DataFrame) -> pd.Series:
    """``frame.duplicated()``, comparing row hashes first and only rows whose hashes collide in full."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    candidates = hashes.duplicated(keep=False)
    out = pd.Series(False, index=frame.index)
    if candidates.any():
        out[candidates] = frame.loc[candidates].duplicated()
    return out


def _repeats(frame: pd.DataFrame) -> tuple[int, int]:
    """How many rows repeat an earlier row exactly, and how many distinct rows occur more than once."""
    repeated = _duplicated(frame)
    groups = int((~_duplicated(frame.loc[repeated])).sum()) if repeated.any() else 0
    return int(repeated.sum()), groups


def _declared_numeric(frame: pd.DataFrame, columns: Sequence[str], source: str) -> pd.DataFrame:
    """Parse the columns named in ``data.numeric`` as numbers; blank cells become missing values."""
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise PipelineError(f"data.numeric: column(s) {unknown} not found in {source}; expected some of {list(frame.columns)}")
    if not columns:
        return frame
    frame = frame.copy()
    for name in columns:
        column = frame[name]
        if column_kind(column) == "numeric":
            continue
        parsed = pd.to_numeric(as_category(column), errors="coerce")
        bad = parsed.isna() & as_category(column).notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PipelineError(f"{source}: column {name!r} (data.numeric): expected numbers, got {column.iloc[row]!r} "
                                f"in data row {row + 1}")
        frame[name] = parsed.astype("float64")
    return frame


def _check_columns(frame: pd.DataFrame, target: str, drop: Sequence[str], source: str) -> None:
    """The target and the ``data.drop`` columns are in the table, and the target is not among those dropped."""
    if target not in frame.columns:
        raise PipelineError(f"data.target = {target!r}: column not found in {source}; expected one of {list(frame.columns)}")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise PipelineError(f"data.drop: column(s) {unknown} not found in {source}; expected some of {list(frame.columns)}")
    if target in drop:
        raise PipelineError(f"data.drop: {target!r} is data.target; expected feature columns only")


def _missing_target(frame: pd.DataFrame, target: str, source: str) -> pd.Series:
    """Which rows have no target; refuses a table where none has one, or where a number is infinite."""
    no_target = frame[target].isna()
    if no_target.all():
        raise PipelineError(f"{source}: column {target!r}: expected some rows with a target, got none of {len(frame)}")
    numbers = frame.select_dtypes("number")
    infinite = [name for name in numbers.columns if np.isinf(numbers[name].to_numpy(dtype="float64")).any()]
    if infinite:
        raise PipelineError(
            f"{source}: column(s) {infinite} hold +/-inf; expected finite numbers (or empty cells for missing values)"
        )
    return no_target


def _features(
    rows: pd.DataFrame, target: str, drop: Sequence[str], keys: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """The rows with a fresh index, less the ``drop`` columns and the near-unique text ones, categories as text.

    Returns:
        The rows, the kind of each feature kept (in column order) and the near-unique text columns left out.
    """
    kept = rows.drop(columns=list(drop)).reset_index(drop=True)
    kinds = {name: detect(kept[name]) for name in kept.columns if name != target and name not in keys}
    identifiers = [name for name, kind in kinds.items() if kind == "identifier"]
    kept = kept.drop(columns=identifiers)
    for name in [name for name, kind in kinds.items() if kind == "categorical"]:
        # the same text form predict gives raw rows, so training and serving agree
        kept[name] = as_category(kept[name])
    return kept, {name: kind for name, kind in kinds.items() if kind != "identifier"}, identifiers


def _dropped_columns(drop: Sequence[str], identifiers: Sequence[str]) -> dict[str, str]:
    """The profile's ``columns_dropped``: each column left out, with why."""
    return {
        **{name: "listed in data.drop" for name in drop},
        **{name: "near-unique text (an identifier or free text), not a category" for name in identifiers},
    }


def ingest(
    frame: pd.DataFrame,
    target: str,
    source: str = "data",
    drop: Sequence[str] = (),
    task: str = "auto",
    keys: Sequence[str] = (),
    numeric: Sequence[str] = (),
    duplicates: str = "keep",
) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """Validate a loaded table, drop the rows no later stage can use, and leave out non-feature columns.

    Identical rows are data: with ``duplicates="keep"`` (or ``"group"``, which only split tells apart) every
    labelled row is kept, and the profile counts the kept rows that repeat an earlier one (``rows_repeated``,
    judged on the columns kept, as split sees them) and the distinct rows among them (``repeated_groups``).
    With ``"drop"`` exact duplicates, judged on the table as loaded, are dropped (``rows_dropped_duplicate``). Columns named in ``drop`` and
    near-unique text columns (identifiers, names, free text: one-hot encoding them would make a feature per
    row) are left out, and the profile says which and why. ISO date columns are kept as kind ``date``.

    Args:
        frame: The table as loaded.
        target: The label column (``data.target``).
        source: A name for the table in messages.
        drop: Columns to leave out (``data.drop``).
        task: ``classification``, ``regression`` or ``auto`` (inferred from the target; the profile says why).
        keys: Columns kept as they are but not features (a sequence's series and time columns).
        numeric: Columns the user declares numeric (``data.numeric``): every non-blank cell must be a number,
            rather than one stray ``n/a`` or typo silently turning the column into text.
        duplicates: ``keep``, ``group`` or ``drop`` (``data.duplicates``).

    Returns:
        The kept rows with a fresh index, their schema, and a profile of what was seen and dropped.

    Raises:
        PipelineError: If the target or a ``drop`` column is absent, or fewer than two classes remain.
    """
    _check_columns(frame, target, drop, source)
    frame = _declared_numeric(frame, numeric, source)
    no_target = _missing_target(frame, target, source)
    # a row missing its target cannot duplicate one that has it, so one pass over the whole frame will do
    duplicated = _duplicated(frame) & ~no_target if duplicates == "drop" else pd.Series(False, index=frame.index)
    kept, kinds, identifiers = _features(frame.loc[~no_target & ~duplicated], target, drop, keys)
    found = resolve_target(kept[target], task, source, "column")
    if len(kept.columns) < 2 + len(keys):
        raise PipelineError(f"{source}: expected at least one feature column besides {[target, *keys]}, got none")
    schema = Schema(target, tuple(kinds.items()), found.task)
    rows = Rows(int(len(frame)), int(no_target.sum()), int(duplicated.sum()), int(len(kept)), duplicates,
                *_repeats(kept))
    dropped = _dropped_columns(drop, identifiers)
    return kept, schema, build_profile(source, rows, found, dropped, column_profile(kept, target, kinds))


def _sequence_keys(
    frame: pd.DataFrame, target: str, series: str, time: str, drop: Sequence[str], source: str
) -> pd.DataFrame:
    """A copy of ``frame`` with the series ids as text and the times parsed; refuses an absent or empty key."""
    frame = frame.copy()
    for key, name in (("id", series), ("time", time)):
        if name not in frame.columns:
            raise PipelineError(f"data.sequence.{key} = {name!r}: column not found in {source}; expected one of {list(frame.columns)}")
        if name == target or name in drop:
            raise PipelineError(f"data.sequence.{key} = {name!r}: expected a column that is neither data.target nor in data.drop")
        if key == "id":
            frame[name] = as_category(frame[name])  # ids as text; a blank id is a missing one
        empty = frame[name].isna()
        if empty.any():
            raise PipelineError(f"{source}: column {name!r} (data.sequence.{key}): expected a value on every row, "
                                f"got {int(empty.sum())} empty")
    frame[time] = seq.as_time(frame[time], time, source)
    return frame


def _series_label(frame: pd.DataFrame, series: str, target: str, source: str) -> pd.Series:
    """The target with each series' label on all its rows; refuses a label that changes within a series."""
    labels = frame.groupby(series, sort=False)[target]
    distinct = labels.nunique()
    changing = distinct[distinct > 1]
    if len(changing):
        first = changing.index[0]
        values = sorted(frame.loc[frame[series] == first, target].dropna().unique().tolist(), key=str)
        raise PipelineError(
            f"{source}: column {target!r}: label changes within series {first!r} (values {values}); expected one "
            f"label per series ({len(changing)} series affected)"
        )
    return labels.transform("first")


def _series_steps(kept: pd.DataFrame, series: str, time: str, source: str) -> pd.Series:
    """Steps per series; refuses a time step given twice with different values, and a series of one step."""
    repeated = kept.duplicated([series, time])
    if repeated.any():
        row = kept.loc[repeated].iloc[0]
        raise PipelineError(
            f"{source}: series {row[series]!r} has time {row[time]} on more than one row with different values; "
            "expected one row per (series, time step)"
        )
    steps = seq.lengths(kept, series)
    short = steps[steps < 2]
    if len(short):
        raise PipelineError(
            f"{source}: series {short.index[0]!r} has {int(short.iloc[0])} time step; expected at least 2 per series "
            f"(a sequence model needs more than one step; {len(short)} series affected)"
        )
    return steps


def ingest_sequences(
    frame: pd.DataFrame, target: str, series: str, time: str, source: str = "data", drop: Sequence[str] = (),
    task: str = "auto", numeric: Sequence[str] = (),
) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """:func:`ingest` for long-format sequences: one row per (series, step), one label per series.

    Every row needs a series id and a time (numbers or ISO dates). A series' label is the same on all its rows
    (rows that leave it empty take it); series without any label are dropped. Rows come back sorted by series
    (first appearance) and time, with the series id as text. An exact copy of a row here is a time step given
    twice, not a second example (the example is the whole series), so copies are always dropped, whatever
    ``data.duplicates`` says, and counted in ``rows_dropped_duplicate``.

    Raises:
        PipelineError: If a key column is absent or empty somewhere, a label changes within a series, a time
            step repeats with different values, or a series has a single step.
    """
    if target not in frame.columns:
        raise PipelineError(f"data.target = {target!r}: column not found in {source}; expected one of {list(frame.columns)}")
    frame = _sequence_keys(frame, target, series, time, drop, source)
    frame[target] = _series_label(frame, series, target, source)  # fill a series' unlabelled rows with its label
    kept, schema, profile = ingest(frame, target, source, drop, task, keys=(series, time), numeric=numeric,
                                   duplicates="drop")
    kept = seq.order(kept, series, time)
    steps = _series_steps(kept, series, time, source)
    schema = Schema(schema.target, schema.features, schema.task, "sequence", series, time)
    per_series = seq.series_labels(kept, series, target)
    profile.update(
        modality="sequence",
        series=int(len(steps)),
        series_length={"min": int(steps.min()), "median": float(steps.median()), "max": int(steps.max())},
        class_counts=class_counts(per_series) if schema.task == "classification" else None,  # a label per series
        class_counts_unit="series",
    )
    return kept, schema, profile


def _image_labels(x: np.ndarray, y: np.ndarray, target: str, source: str) -> tuple[pd.Series, np.ndarray]:
    """The labels (text ones in category form) and which images have none; refuses non-finite pixels and a set
    with no label at all."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise PipelineError(
            f"{source}: array 'x': expected finite pixel values, got NaN or +/-inf in {int(bad.sum())} image(s), "
            f"first at index {int(np.flatnonzero(bad)[0])}"
        )
    labels = pd.Series(y, name=target)
    if labels.dtype.kind in "OUS":
        labels = as_category(labels)
    no_target = labels.isna().to_numpy()
    if no_target.all():
        raise PipelineError(f"{source}: array {target!r}: expected some labelled images, got none of {len(x)}")
    return labels, no_target


def _image_repeats(x: np.ndarray, labels: pd.Series, no_target: np.ndarray) -> tuple[np.ndarray, int]:
    """Which labelled images repeat an earlier one's pixels and label, and how many distinct images they copy."""
    # an image and its label hashed together; equal hashes are confirmed byte for byte
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    keys = pd.DataFrame({"pixels": [row.tobytes() for row in flat], "label": labels.astype("str")})
    # unlabelled images are left out first, so they never count as copies
    labelled = keys.loc[~no_target]
    repeated = np.zeros(len(x), dtype=bool)
    repeated[~no_target] = labelled.duplicated().to_numpy()
    groups = int((~labelled.loc[repeated[~no_target]].duplicated()).sum())
    return repeated, groups


def ingest_images(
    x: np.ndarray, y: np.ndarray, target: str, source: str = "data", task: str = "auto", duplicates: str = "keep"
) -> tuple[pd.DataFrame, np.ndarray, Schema, dict[str, Any]]:
    """Validate images (N, C, H, W) and their labels; drop unlabelled images.

    An image whose pixels and label both equal an earlier one's is kept and counted (``duplicates`` ``"keep"``
    or ``"group"``, as :func:`ingest`) or dropped (``"drop"``).

    Returns:
        The target as a one-column table, the kept images (row for row), the schema and the profile.

    Raises:
        PipelineError: If a pixel is not finite, no image has a label, or fewer than two classes remain.
    """
    labels, no_target = _image_labels(x, y, target, source)
    repeated, groups = _image_repeats(x, labels, no_target)
    kept_copies = duplicates != "drop"
    duplicated = np.zeros(len(x), dtype=bool) if kept_copies else repeated
    keep = ~no_target & ~duplicated
    images = x[keep]
    table = pd.DataFrame({target: labels[keep].reset_index(drop=True)})
    found = resolve_target(table[target], task, source, "array")
    shape = tuple(int(v) for v in images.shape[1:])
    schema = Schema(target, (), found.task, "image", image_shape=shape)
    rows = Rows(int(len(x)), int(no_target.sum()), int(duplicated.sum()), int(len(images)), duplicates,
                int(repeated.sum()) if kept_copies else 0, groups if kept_copies else 0)
    pixels = {"dtype": "float32", "min": float(images.min()), "max": float(images.max()), "mean": float(images.mean())}
    columns = {target: {"dtype": str(table[target].dtype), "kind": "target", "missing": 0}}
    profile = build_profile(source, rows, found, {}, columns, "image", image_shape=list(shape), pixels=pixels)
    return table, images, schema, profile


def run_ingest(data: DataConfig) -> tuple[pd.DataFrame, np.ndarray | None, Schema, dict[str, Any]]:
    """Load ``data.source`` and ingest it by modality; images come back as an array beside the table."""
    if data.modality == "image":
        x, y = sources.load_images(data.source, data.target)
        return ingest_images(x, y, data.target, data.source, data.task, data.duplicates)
    frame = sources.load(data.source)
    if data.modality == "sequence":
        kept, schema, profile = ingest_sequences(
            frame, data.target, data.sequence.id, data.sequence.time, data.source, data.drop, data.task, data.numeric
        )
    else:
        kept, schema, profile = ingest(frame, data.target, data.source, data.drop, data.task, numeric=data.numeric,
                                       duplicates=data.duplicates)
    return kept, None, schema, profile


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main() -> None:
    """Load ``data.source`` and write ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "out")
    params = load_params(args.params)
    data = params.data
    kept, images, schema, profile = run_ingest(data)
    # the task is known from here on: a setting that contradicts it stops the pipeline before anything is written
    require_task(params, schema.task)
    autos = resolved_autos(params, schema.task)
    with atomic_dir(args.out) as out:
        write_parquet(out / "data.parquet", kept)
        if images is not None:
            write_npy(out / "images.npy", images)
        write_json(out / "schema.json", schema.to_dict())
        write_json(out / "profile.json", profile)
    dropped = profile["rows_dropped_missing_target"] + profile["rows_dropped_duplicate"]
    left_out = "".join(f"; left out {name!r}: {why}" for name, why in profile["columns_dropped"].items())
    date_columns = [name for name, kind in schema.features if kind == "date"]
    dates = f"; dates as days since 1970-01-01: {date_columns}" if date_columns else ""
    target = f"classes {profile['class_counts']}" if schema.task == "classification" else (
        f"target mean {profile['target_summary']['mean']:.4g}, std {profile['target_summary']['std']:.4g}")
    if schema.modality == "image":
        what = f"{profile['rows']} images {'x'.join(map(str, schema.image_shape))}"
    elif schema.modality == "sequence":
        length = profile["series_length"]
        what = (f"{profile['series']} series of {length['min']}-{length['max']} steps ({profile['rows']} rows), "
                f"{_count(len(schema.features), 'feature')}")
    else:
        what = f"{profile['rows']} rows, {_count(len(schema.features), 'feature')}"
    if profile["rows_repeated"]:  # kept on purpose: say so, a user may expect them gone
        unit = for_schema(schema).unit  # sequences never get here: their copies are always dropped
        how = ("split row by row; data.duplicates: drop if they are copies of one record" if data.duplicates == "keep"
               else "same inputs kept in one split part")
        what += (f", {profile['rows_repeated']} repeated {unit} kept (copies of {profile['repeated_groups']} "
                 f"distinct {unit}; {how})")
    print(f"ingest: {data.source}: {what}, {dropped} rows dropped; "
          f"task {schema.task} ({profile['task_reason']}); {target}{left_out}{dates}")
    if autos:
        print(f"ingest: for a {schema.task} task, " + ", ".join(f"{key}: auto -> {value}" for key, value in autos.items()))


if __name__ == "__main__":
    run_main(main, "ingest")
