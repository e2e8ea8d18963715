"""K-fold splits of train+val for cross-validation; the test split is copied unchanged and never looked at.

Each fold is a split folder as the split stage writes it (``train``/``val``/``test`` Parquet, images' ``.npy``
beside their tables, ``summary.json``), so the clean and scale stages' functions read it as they read
``data/split``. Examples are drawn as the split stage draws them: stratified by class for classification, whole
series for sequences, rows with the same inputs in one fold with ``data.duplicates: group``. With
``split.method: time`` the folds chain forward: train+val in time order is cut into ``k + 1`` consecutive blocks
and fold ``i`` trains on blocks ``0..i`` and validates on block ``i + 1``, so validation always comes after the
rows trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Params
from pipeline.errors import PipelineError, plain
from pipeline.io import read_json, read_parquet, write_json, write_parquet
from pipeline.modality import Modality, for_schema, write_arrays
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import read_schema
from pipeline.stages.split import row_groups, summarise
from pipeline.tuning.prepare import DIGEST_CHARS, build_once, inputs_digest

FOLD_PARAMS = ("seed", "split.method", "split.time_column", "data.duplicates")  # what the assignment reads
FORMAT = 1  # part of the folds' key: bump it when the assignment changes, so folds written before are redrawn
MANIFEST = "folds.json"
Folds = list[tuple[np.ndarray, np.ndarray]]  # per fold: train and val positions among the examples


def _check_count(k: int, counts: pd.Series | int, what: str, key: str) -> None:
    """Refuse ``k`` folds unless there are at least ``k`` examples (of each class, with ``counts`` per class)."""
    if k < 2:
        raise PipelineError(f"{key} = {k}: expected at least 2 folds")
    if isinstance(counts, int):
        if k > counts:
            raise PipelineError(f"{key} = {k}: expected at most {counts} (train+val has {counts} {what})")
        return
    smallest = counts.idxmin()
    if k > counts[smallest]:
        raise PipelineError(f"{key} = {k}: expected at most {counts[smallest]} (the smallest class, "
                            f"{plain(smallest)!r}, has {counts[smallest]} train+val {what})")


def fold_positions(n: int, labels: np.ndarray | None, k: int, seed: int, groups: np.ndarray | None = None, *,
                   unit: str = "rows", key: str = "tune.folds") -> Folds:
    """Shuffled k-fold train/val positions of ``n`` examples: stratified by ``labels`` (classification), with
    the examples of one group (``groups``: a number per example) always in one fold.

    Args:
        n: Examples.
        labels: A class per example, or ``None`` (regression: plain shuffled folds).
        k: Folds.
        seed: Seeds the shuffle.
        groups: A group per example (rows with the same inputs), or ``None``.
        unit: The word for examples in messages (``rows``, ``images``, ``series``).
        key: The params key that set ``k``, for messages.

    Returns:
        Per fold, sorted train and val positions; the val positions of all folds partition the examples.

    Raises:
        PipelineError: If ``k < 2``, or more than the examples (of the smallest class; groups when grouped).
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    what = unit if groups is None else f"groups of {unit} with the same inputs"
    first = np.arange(n)
    if groups is not None:
        groups, _ = pd.factorize(np.asarray(groups))
        _, first = np.unique(groups, return_index=True)  # a group's first example
    if labels is None:
        _check_count(k, len(first), what, key)
    else:  # a group counts for the class of its first row, as the split stage counts it
        _check_count(k, pd.Series(np.asarray(labels)[first]).value_counts(sort=False), what, key)
    splitter = {(False, False): KFold, (False, True): GroupKFold, (True, False): StratifiedKFold,
                (True, True): StratifiedGroupKFold}[(labels is not None, groups is not None)]
    drawn = splitter(n_splits=k, shuffle=True, random_state=seed).split(np.zeros((n, 1)), labels, groups)
    return [(np.sort(train), np.sort(val)) for train, val in drawn]


def time_positions(when: pd.Series, k: int, *, unit: str = "rows", key: str = "tune.folds") -> Folds:
    """Forward-chaining train/val positions: examples in time order (ties in their order) cut into ``k + 1``
    consecutive blocks; fold ``i`` trains on blocks ``0..i`` and validates on block ``i + 1``.

    Raises:
        PipelineError: If ``k < 2`` or there are fewer than ``k + 1`` examples.
    """
    if k < 2:
        raise PipelineError(f"{key} = {k}: expected at least 2 folds")
    n = len(when)
    if k + 1 > n:
        raise PipelineError(f"{key} = {k}: expected at most {n - 1} with split.method: time (train+val has {n} "
                            f"{unit}, cut into {key} + 1 blocks)")
    blocks = np.array_split(np.argsort(when.to_numpy(), kind="stable"), k + 1)
    return [(np.sort(np.concatenate(blocks[: i + 1])), np.sort(blocks[i + 1])) for i in range(k)]


def _check_classes(folds: Folds, labels: np.ndarray, unit: str, key: str, hint: str) -> None:
    """Refuse folds whose train lacks a class of train+val: its scaler could not encode that class in val/test."""
    classes = set(labels.tolist())  # tolist: plain values in messages
    for i, (train, _) in enumerate(folds):
        absent = sorted(classes - set(labels[train].tolist()), key=str)
        if absent:
            raise PipelineError(f"{key} = {len(folds)}: fold {i} trains on no {unit} of class(es) {absent}; expected "
                                f"every class in each fold's train ({hint})")


def _times(frame: pd.DataFrame, schema: Schema, params: Params, ids: pd.Index | None) -> pd.Series:
    """What orders the examples for ``split.method: time``: a row's time, or a series' first step's time, as the
    split stage orders them."""
    if ids is not None:
        return frame.groupby(schema.sequence_id, sort=False)[schema.sequence_time].min().reindex(ids)
    column = params.split.time_column
    if column not in frame.columns:
        raise PipelineError(f"split.time_column = {column!r}: column not found in the ingested data; expected one "
                            f"of {list(frame.columns)}")
    when = seq.as_time(frame[column], column, f"split.time_column = {column!r}")
    if when.isna().any():
        raise PipelineError(f"split.method = 'time': column {column!r}: expected a time on every row, got "
                            f"{int(when.isna().sum())} empty")
    return when


def assign_folds(frame: pd.DataFrame, images: np.ndarray | None, schema: Schema, params: Params, k: int, *,
                 key: str = "tune.folds") -> tuple[pd.Index | None, Folds]:
    """The folds of train+val (``frame``, and its ``images`` row for row) as ``params.split`` and
    ``params.data.duplicates`` say, seeded by ``params.seed``.

    Returns:
        The series ids the positions index (sequences; ``None`` when an example is a row), and per fold the
        sorted train and val positions of examples.

    Raises:
        PipelineError: If ``k`` is out of range for the data, or a fold's train would lack a class.
    """
    modality = for_schema(schema)
    classification = schema.task == "classification"
    labels = modality.labels(frame)
    ids = labels.index if modality.by_series else None
    values = labels.to_numpy() if classification else None
    unit = modality.unit
    if params.split.method == "time":
        folds = time_positions(_times(frame, schema, params, ids), k, unit=unit, key=key)
        hint = "fewer folds: with split.method: time the first folds train on the earliest examples alone"
    else:
        grouped = params.data.duplicates == "group" and not modality.by_series  # a series is its own group
        groups = row_groups(frame.drop(columns=[schema.target]), images) if grouped else None
        folds = fold_positions(len(labels), values, k, params.seed, groups, unit=unit, key=key)
        hint = "fewer folds, or data.duplicates: keep" if grouped else "fewer folds"
    if values is not None:
        _check_classes(folds, values, unit, key, hint)
    return ids, folds


def _fold_key(params: Params, k: int, raw: Path, split: Path) -> str:
    """A digest of everything a set of folds follows from: the keys the assignment reads, ``k``, this module's
    :data:`FORMAT`, and the contents of the raw schema and the split folder."""
    flat = {name: functools.reduce(getattr, name.split("."), params) for name in FOLD_PARAMS}
    text = json.dumps({"params": flat, "k": k, "format": FORMAT, "inputs": inputs_digest(raw / "schema.json", split)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _write_fold(folder: Path, parts: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray] | None, split: Path,
                modality: Modality, schema: Schema) -> None:
    """One fold as the split stage writes a split folder; test is copied byte for byte from ``split``."""
    folder.mkdir()
    for name in ("train", "val"):
        write_parquet(folder / f"{name}.parquet", parts[name])
    write_arrays(folder, arrays)
    test = {"test": read_parquet(split / "test.parquet")}
    shutil.copyfile(split / "test.parquet", folder / "test.parquet")
    if arrays is not None:
        shutil.copyfile(split / "test.npy", folder / "test.npy")
        arrays = {**arrays, "test": modality.read_array(split, "test")}
    write_json(folder / "summary.json", summarise({**parts, **test}, schema, arrays))


def _write_all(out: Path, params: Params, schema: Schema, split: Path, k: int, key: str, digest: str) -> None:
    """Draw the folds of ``split``'s train+val and write each into ``out/fold-<i>``, then the manifest."""
    modality = for_schema(schema)
    tables = [read_parquet(split / f"{name}.parquet") for name in ("train", "val")]
    frame = pd.concat(tables, ignore_index=True)
    arrays = modality.read_arrays(split, ("train", "val"))
    images = None if arrays is None else np.concatenate([arrays["train"], arrays["val"]])
    del tables, arrays
    ids, folds = assign_folds(frame, images, schema, params, k, key=key)
    for i, positions in enumerate(folds):
        rows = [np.flatnonzero(frame[schema.sequence_id].isin(ids[p])) if ids is not None else p for p in positions]
        parts = {name: frame.iloc[r].reset_index(drop=True) for name, r in zip(("train", "val"), rows)}
        fold_arrays = None if images is None else {name: images[r] for name, r in zip(("train", "val"), rows)}
        _write_fold(out / f"fold-{i}", parts, fold_arrays, split, modality, schema)
    write_json(out / MANIFEST, {"key": digest, "folds": k, "method": params.split.method})


def _manifest_key(out: Path) -> str | None:
    path = out / MANIFEST
    try:
        return read_json(path).get("key") if path.is_file() else None
    except (PipelineError, AttributeError):  # damaged or foreign: drawn again
        return None


def write_folds(params: Params, raw: Path, split: Path, k: int, out: Path, *, key: str = "tune.folds") -> list[Path]:
    """Write ``out/fold-0`` ... ``out/fold-<k-1>``: cross-validation folds of ``split``'s train+val.

    Fold ``i``'s val holds the examples of fold ``i``, its train the rest of train+val (with ``split.method:
    time``: only the blocks before it), its test the split's test copied unchanged. Deterministic from
    ``params.seed``. The folders are reused when they were drawn from the same inputs (see :func:`_fold_key`),
    otherwise written whole into a temporary sibling of ``out`` and renamed into place.

    Args:
        params: The params: ``seed``, ``split.method``, ``split.time_column`` and ``data.duplicates`` are read.
        raw: Ingest's folder (its ``schema.json``).
        split: The split folder to draw folds from (``data/split``).
        k: Folds.
        out: The folder to hold the folds.
        key: The params key that set ``k``, named in messages.

    Returns:
        The fold folders, in order.

    Raises:
        PipelineError: If ``k < 2`` or too many for the data (see :func:`fold_positions`), or a fold's train
            would lack a class.
    """
    raw, split, out = Path(raw), Path(split), Path(out)
    if k < 2:
        raise PipelineError(f"{key} = {k}: expected at least 2 folds")
    schema = read_schema(raw)
    digest = _fold_key(params, k, raw, split)
    names = [f"fold-{i}" for i in range(k)]

    def ready(folder: Path) -> bool:
        return _manifest_key(folder) == digest and all((folder / name).is_dir() for name in names)

    build_once(out, lambda tmp: _write_all(tmp, params, schema, split, k, key, digest), ready)
    return [out / name for name in names]
