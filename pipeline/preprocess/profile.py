"""What ingest records about the rows it kept: the task, the class counts and the profile.

One place for the table, image and sequence paths of ingest (and for clean's class counts), so the task is
inferred, the classes are counted and ``profile.json`` is laid out the same way whatever the modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Task, column_kind, infer_task


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Rows (or series, or images) per class, classes in sorted order, as JSON-ready text keys."""
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


@dataclass(frozen=True)
class Target:
    """The task ingest settled on and what the profile says about the target.

    Attributes:
        task: ``classification`` or ``regression``.
        reason: Why, in words (inferred from the values, or set in ``data.task``); ingest prints it.
        class_counts: Rows per class (classification only).
        summary: The target's ``describe()`` without the count (regression only).
    """

    task: Task
    reason: str
    class_counts: dict[str, int] | None
    summary: dict[str, float] | None


def resolve_target(target: pd.Series, task: str, source: str, noun: Literal["column", "array"]) -> Target:
    """Infer the task from the kept target values (``task="auto"``) or take ``data.task``, and check it fits.

    Args:
        target: The target values of the kept rows, named after the target.
        task: ``classification``, ``regression`` or ``auto``.
        source: A name for the data in messages.
        noun: What the target is in messages: a table's ``column`` or an image set's ``array``.

    Raises:
        PipelineError: If a regression target holds no numbers, or a classification target fewer than two
            classes.
    """
    if task == "auto":
        task, reason = infer_task(target)
    else:
        reason = "set in data.task"
    if task == "regression" and column_kind(target) != "numeric":
        got = f"{target.dtype} values" if noun == "column" else f"{target.dtype}"  # each path's wording, as it was
        raise PipelineError(
            f"data.task = 'regression': {noun} {target.name!r} in {source}: expected numbers, got {got}"
        )
    if task == "regression":
        return Target(task, reason, None, {k: float(v) for k, v in target.describe().items() if k != "count"})
    classes = target.value_counts().sort_index()
    if len(classes) < 2:
        raise PipelineError(
            f"{source}: {noun} {target.name!r}: expected at least 2 classes, got {classes.index.tolist()}"
        )
    return Target(task, reason, class_counts(target), None)


def column_profile(kept: pd.DataFrame, target: str, kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The profile's entry per kept column: its dtype, its kind (``target``, a feature's, or ``key`` for a
    sequence's series and time columns) and its missing values."""
    return {
        name: {
            "dtype": str(kept[name].dtype),
            "kind": "target" if name == target else kinds.get(name, "key"),
            "missing": int(kept[name].isna().sum()),
        }
        for name in kept.columns
    }


@dataclass(frozen=True)
class Rows:
    """What ingest did with the rows it loaded, as the profile counts them.

    Attributes:
        loaded: Rows (or images) as loaded.
        missing_target: Dropped for want of a target.
        duplicate: Dropped as exact copies (``data.duplicates: drop``, and a sequence's repeated steps).
        kept: Rows left.
        duplicates: The ``data.duplicates`` setting in force.
        repeated: Kept rows that repeat an earlier kept row.
        groups: Distinct rows among the repeated ones.
    """

    loaded: int
    missing_target: int
    duplicate: int
    kept: int
    duplicates: str
    repeated: int
    groups: int


def build_profile(
    source: str, rows: Rows, target: Target, columns_dropped: dict[str, str], columns: dict[str, dict[str, Any]],
    modality: str | None = None, **extra: Any,
) -> dict[str, Any]:
    """The profile ``profile.json`` holds, its keys in the order every modality writes them.

    Args:
        source: ``data.source``.
        rows: The row counts.
        target: The task and the target's class counts or summary.
        columns_dropped: Column name -> why it was left out.
        columns: Column name -> dtype, kind and missing values, for every kept column.
        modality: Named right after the source when given (images; sequences add theirs afterwards).
        **extra: Modality-specific entries, placed after the task (an image's shape and pixel range).
    """
    return {
        "source": source,
        **({"modality": modality} if modality else {}),
        "rows_loaded": rows.loaded,
        "rows_dropped_missing_target": rows.missing_target,
        "rows_dropped_duplicate": rows.duplicate,
        "rows": rows.kept,
        "duplicates": rows.duplicates,
        "rows_repeated": rows.repeated,
        "repeated_groups": rows.groups,
        "task": target.task,
        "task_reason": target.reason,
        **extra,
        "columns_dropped": columns_dropped,
        "columns": columns,
        "class_counts": target.class_counts,
        "target_summary": target.summary,
    }
