"""Stage split: train/validation/test parts drawn before anything is fitted.

``random`` is seeded and stratified by class (classification). Repeated rows are separate examples and are
split row by row (``data.duplicates: keep``); with ``data.duplicates: group`` rows with the same inputs (every
column but the target; for images the pixels) land in one part whatever their labels, so no test input is
also a train input. ``time`` puts the latest rows (or series) in test and the ones before them in val, as a
model meets the future; order alone decides there. Sequences are split by whole series, so no series has
steps in two parts; images are split row for row with their table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, plain, run_main
from pipeline.io import atomic_dir, read_parquet, write_json
from pipeline.modality import for_schema, write_arrays
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.profile import class_counts
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import SPLITS, read_schema, stage_args, write_splits


def row_groups(frame: pd.DataFrame, images: np.ndarray | None = None) -> np.ndarray:
    """A group number per row, numbered by first appearance, the same for identical rows (every column of
    ``frame``; with ``images``, also the pixels).

    Rows are compared by a 64-bit hash of their values (missing values alike, 0.0 and -0.0 alike; pixels byte
    for byte). Two different rows whose hashes collide would share a group, which only keeps them in one part.
    """
    keyed = frame.reset_index(drop=True)
    if images is not None:
        flat = np.ascontiguousarray(images.reshape(len(images), -1))
        keyed = keyed.assign(**{"\0pixels": [row.tobytes() for row in flat]})  # a name no column can have
    codes, _ = pd.factorize(pd.util.hash_pandas_object(keyed, index=False))
    return codes


def _taken(sizes: np.ndarray, want: int) -> int:
    """How many groups, of ``sizes`` in drawn order, a part takes: whole groups from the front while the next
    brings it nearer ``want`` rows (so a part misses its share by at most half a group), never the last one."""
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, want, side="right"))  # the groups that fit whole
    got = int(ends[count - 1]) if count else 0
    if count < len(sizes) and ends[count] - want < want - got:  # overshooting less than it falls short
        count += 1
    return min(count, len(sizes) - 1)  # the last group of a class stays in train


def _draw(rows: np.ndarray, groups: np.ndarray, rng: np.random.Generator, n_test: int, n_val: int) -> list[np.ndarray]:
    """Test, val and train positions of one class: its groups shuffled, then test and val filled with whole groups.

    With every group one row this is exactly ``rng.permutation(rows)`` cut at ``n_test`` and ``n_test + n_val``:
    groups are numbered by first appearance, and shuffling their numbers draws the same order as shuffling rows.
    """
    codes, _ = pd.factorize(groups[rows])
    sizes = np.bincount(codes)
    order = rng.permutation(len(sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    shuffled = np.argsort(rank[codes], kind="stable")  # group by group in drawn order, each group in row order
    drawn = sizes[order]
    k_test = _taken(drawn, n_test)
    k_val = k_test + _taken(drawn[k_test:], n_val)
    cut_test, cut_val = int(drawn[:k_test].sum()), int(drawn[:k_val].sum())
    ordered = rows[shuffled]
    return [ordered[:cut_test], ordered[cut_test:cut_val], ordered[cut_val:]]


def assign(
    labels: np.ndarray, val: float, test: float, seed: int, stratify: bool = True, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Positions for each part, so that every class keeps its share in each (or at random, without ``stratify``).

    Within each class (in sorted order, so the draw never depends on row order elsewhere) the groups of rows
    (``groups``: one number per row, see :func:`row_groups`; by default every row its own) are shuffled, and
    test, then val, take whole groups until they hold ``round(n * test)`` and ``round(n * val)`` rows, or as
    near as whole groups allow; the rest go to train. A group counts for the class of its first row. So rows
    of one group never land in two parts, and with groups of one row the split is the plain shuffle-and-cut.
    Positions come back sorted, so rows keep their original order within each part.

    Raises:
        PipelineError: If a part would be empty or a class would be missing from train.
    """
    rng = np.random.default_rng(seed)
    strata = labels if stratify else np.zeros(len(labels), dtype=int)
    if groups is None:
        groups = np.arange(len(labels))
    else:
        groups, _ = pd.factorize(np.asarray(groups))
        _, first = np.unique(groups, return_index=True)  # each group's first row, whose class it counts for
        strata = strata[first[groups]]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for cls in sorted(pd.unique(strata), key=str):
        rows = np.flatnonzero(strata == cls)
        n_test, n_val = round(len(rows) * test), round(len(rows) * val)
        if len(rows) - n_test - n_val < 1:
            raise PipelineError(
                f"split.val = {val:g}, split.test = {test:g}: "
                + (f"class {plain(cls)!r} has {len(rows)} examples" if stratify else f"{len(rows)} examples in all")
                + ", expected at least one left for train"
            )
        for name, chosen in zip(("test", "val", "train"), _draw(rows, groups, rng, n_test, n_val)):
            parts[name].append(chosen)
    out = _checked({name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}, len(labels))
    absent = sorted(set(labels.tolist()) - set(labels[out["train"]].tolist()), key=str) if stratify else []
    if absent:  # only groups that mix classes can do this: a class with no group of its own
        raise PipelineError(
            f"data.duplicates = 'group': class(es) {absent} have no train row, as each of their rows has the inputs "
            "of an earlier row of another class and stays with it; expected every class in train "
            "(use data.duplicates: keep)"
        )
    return out


def assign_by_time(when: pd.Series, labels: np.ndarray | None, val: float, test: float, column: str) -> dict[str, np.ndarray]:
    """Positions for each part in time order: the latest ``test`` share to test, the ``val`` share before it to val.

    Ties keep their original order. With ``labels`` (classification) every class must appear in train.

    Raises:
        PipelineError: If a time is missing, a part would be empty, or a class would be absent from train.
    """
    if when.isna().any():
        raise PipelineError(f"split.method = 'time': column {column!r}: expected a time on every row, got "
                            f"{int(when.isna().sum())} empty")
    ordered = np.argsort(when.to_numpy(), kind="stable")
    n = len(ordered)
    n_test, n_val = round(n * test), round(n * val)
    parts = {"train": ordered[: n - n_test - n_val], "val": ordered[n - n_test - n_val : n - n_test],
             "test": ordered[n - n_test :]}
    parts = _checked({name: np.sort(rows) for name, rows in parts.items()}, n)
    if labels is not None:
        absent = sorted(set(labels.tolist()) - set(labels[parts["train"]].tolist()), key=str)  # tolist: plain values
        if absent:
            raise PipelineError(
                f"split.method = 'time': class(es) {absent} occur only after the train period; expected every class "
                "in train (use split.method: random, or smaller split.val/split.test)"
            )
    return parts


def _checked(parts: dict[str, np.ndarray], total: int) -> dict[str, np.ndarray]:
    for name, rows in parts.items():
        if len(rows) == 0:
            raise PipelineError(f"split.{name}: expected a non-empty {name} split from {total} examples, got 0")
    return parts


def split_sequences(
    frame: pd.DataFrame, schema: Schema, val: float, test: float, seed: int, method: str = "random"
) -> dict[str, pd.DataFrame]:
    """Split long-format sequences by whole series: stratified by series label, or by each series' start time."""
    series = schema.sequence_id
    labels = for_schema(schema).labels(frame)
    classification = schema.task == "classification"
    if method == "time":
        start = frame.groupby(series, sort=False)[schema.sequence_time].min()
        parts = assign_by_time(start, labels.to_numpy() if classification else None, val, test, schema.sequence_time)
    else:
        parts = assign(labels.to_numpy(), val, test, seed, stratify=classification)
    out = {}
    for name, positions in parts.items():
        chosen = frame[series].isin(labels.index[positions])
        out[name] = frame.loc[chosen].reset_index(drop=True)
    return out


def split_any(
    frame: pd.DataFrame, images: np.ndarray | None, schema: Schema, params: Params
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray] | None]:
    """Split any modality as ``params.split`` says; images are cut with the same positions as their table.

    ``random`` with ``data.duplicates: group`` keeps rows with the same inputs (images: the same pixels) in one
    part.
    """
    cfg = params.split
    classification = schema.task == "classification"
    if for_schema(schema).by_series:
        return split_sequences(frame, schema, cfg.val, cfg.test, params.seed, cfg.method), None
    if cfg.method == "time":
        column = cfg.time_column
        if column not in frame.columns:
            raise PipelineError(f"split.time_column = {column!r}: column not found in the ingested data; expected one "
                                f"of {list(frame.columns)}")
        labels = frame[schema.target].to_numpy() if classification else None
        parts = assign_by_time(seq.as_time(frame[column], column, f"split.time_column = {column!r}"), labels, cfg.val, cfg.test, column)
    else:
        inputs = frame.drop(columns=[schema.target])
        groups = row_groups(inputs, images) if params.data.duplicates == "group" else None
        parts = assign(frame[schema.target].to_numpy(), cfg.val, cfg.test, params.seed, stratify=classification,
                       groups=groups)
    tables = {name: frame.iloc[rows].reset_index(drop=True) for name, rows in parts.items()}
    return tables, None if images is None else {name: images[rows] for name, rows in parts.items()}


def _repeated(groups: np.ndarray) -> int:
    """Rows whose group already occurred earlier: the copies beyond each group's first row."""
    return int(len(groups) - len(np.unique(groups)))


def summarise(
    parts: dict[str, pd.DataFrame], schema: Schema, arrays: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Rows (and series) and class counts per part; sequences count classes per series. Tables and images also
    count the rows that repeat an earlier row of their part (``rows_repeated``)."""
    modality = for_schema(schema)
    out = {}
    for name, part in parts.items():
        labels = modality.labels(part)
        entry: dict[str, Any] = {"rows": len(part)}
        if modality.by_series:
            entry["series"] = len(labels)
        else:
            entry["rows_repeated"] = _repeated(row_groups(part, None if arrays is None else arrays[name]))
        entry["class_counts"] = class_counts(labels) if schema.task == "classification" else None
        out[name] = entry
    return out


def main() -> None:
    """Split ``--raw``'s data into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "out")
    params = load_params(args.params)
    schema = read_schema(args.raw)
    modality = for_schema(schema)
    frame = read_parquet(args.raw / "data.parquet")
    images = modality.read_array(args.raw, "images")
    parts, arrays = split_any(frame, images, schema, params)
    summary = summarise(parts, schema, arrays)
    with atomic_dir(args.out) as out:
        write_splits(out, parts)
        write_arrays(out, arrays)
        write_json(out / "summary.json", summary)
    repeated = sum(s.get("rows_repeated", 0) for s in summary.values())
    print(f"split ({params.split.method}): " + ", ".join(f"{name} {s.get('series', s['rows'])} {modality.unit}"
                                                        for name, s in summary.items())
          + (f"; {repeated} rows repeat an earlier row of their part" if repeated else ""))


if __name__ == "__main__":
    run_main(main, "split")
