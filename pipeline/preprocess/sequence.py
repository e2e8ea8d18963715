"""Long-format sequences: ordering, per-series labels, filling along time, and padding into a masked array.

A sequence dataset holds one row per (series, time step). Rows are kept sorted by series (in order of first
appearance) and then by time, so every step that needs a series in one piece can take it as a contiguous run.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd

from pipeline.config.data import AlongTimeFill
from pipeline.errors import PipelineError

MASK = "__mask"  # the name of the extra channel that marks real steps (1) against padding (0)


def order(frame: pd.DataFrame, series: str, time: str) -> pd.DataFrame:
    """Rows sorted by series (first appearance) and time, with a fresh index; the sort is stable."""
    rank = pd.Series(pd.factorize(frame[series])[0], index=frame.index)
    keys = pd.DataFrame({"rank": rank, "time": frame[time]})
    return frame.loc[keys.sort_values(["rank", "time"], kind="stable").index].reset_index(drop=True)


def series_labels(frame: pd.DataFrame, series: str, target: str) -> pd.Series:
    """One label per series (its first row's), indexed by series id in order of first appearance."""
    return frame.groupby(series, sort=False)[target].first()


def lengths(frame: pd.DataFrame, series: str) -> pd.Series:
    """Steps per series, indexed by series id in order of first appearance."""
    return frame.groupby(series, sort=False).size()


def fill_along_time(frame: pd.DataFrame, series: str, columns: list[str], method: str) -> pd.DataFrame:
    """Fill gaps in ``columns`` from the same series only, never from another series.

    ``ffill`` carries the last observation forward; ``interpolate`` draws a straight line between the
    observations on either side (by position). Either way a gap at the start of a series takes the first
    observation after it. A series with no observation of a column keeps its gaps (the caller fills those
    with a train statistic). ``frame`` must be ordered by :func:`order`.
    """
    out = frame.copy()
    groups = out.groupby(series, sort=False)[columns]
    if method == "ffill":
        filled = groups.ffill()
    elif method == "interpolate":
        filled = groups.transform(lambda g: g.interpolate(method="linear", limit_direction="forward"))
    else:
        raise PipelineError(f"clean.numeric: expected one of {get_args(AlongTimeFill)} along time, got {method!r}")
    out[columns] = filled
    out[columns] = out.groupby(series, sort=False)[columns].bfill()  # leading gaps: the first observation
    return out


def pad(
    frame: pd.DataFrame, series: str, columns: list[str], length: int, source: str = "input", fixed: bool = False
) -> tuple[pd.Index, np.ndarray]:
    """Stack each series into a zero-padded float32 array (N, T, F + 1) whose last channel is the mask.

    Args:
        frame: Encoded rows ordered by :func:`order`.
        series: The series column.
        columns: The F feature columns, in order.
        length: The fewest steps per series in the output (the longest train series). A longer series
            lengthens the output to its own length (networks that take any length), never is cut.
        source: Where the rows came from, for error messages.
        fixed: The network takes exactly ``length`` steps (a feed-forward net): a longer series is refused.

    Returns:
        The series ids in output order, and the array, T = max(length, the longest series in ``frame``).

    Raises:
        PipelineError: If ``fixed`` and a series has more than ``length`` steps.
    """
    codes, ids = pd.factorize(frame[series])
    counts = np.bincount(codes, minlength=len(ids))
    longest = int(counts.max()) if len(counts) else 0
    if fixed and longest > length:
        at = int(counts.argmax())
        raise PipelineError(
            f"{source}: series {ids[at]!r} has {longest} steps; expected at most {length}, the longest series the "
            "network was trained on: model.kind 'fnn' takes a fixed number of steps (model.kind: rnn or cnn "
            "takes series of any length)"
        )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    step = np.arange(len(frame)) - starts[codes]  # position within its series (rows are contiguous per series)
    out = np.zeros((len(ids), max(length, longest), len(columns) + 1), dtype="float32")
    out[codes, step, : len(columns)] = frame[columns].to_numpy(dtype="float32")
    out[codes, step, len(columns)] = 1.0
    return pd.Index(ids, name=series), out


def as_time(values: pd.Series, column: str, source: str) -> pd.Series:
    """Time values as numbers or (zone-free UTC) datetimes, the two forms that order steps.

    Raises:
        PipelineError: If a value is neither a number nor an ISO date.
    """
    if pd.api.types.is_datetime64_any_dtype(values) and getattr(values.dt, "tz", None) is None:
        return values
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values
    present = values.notna()
    numbers = pd.to_numeric(values.astype("str"), errors="coerce")
    if numbers[present].notna().mean() >= 0.5:  # mostly numbers: name the first cell that is not one
        bad = present & numbers.isna()
        if not bad.any():
            return numbers
    else:
        parsed = pd.to_datetime(values.astype("str"), errors="coerce", format="ISO8601", utc=True)
        bad = present & parsed.isna()
        if not bad.any():
            return parsed.dt.tz_convert(None)
    raise PipelineError(f"{source}: column {column!r}: expected numbers or ISO dates to order steps, got "
                        f"{values[bad].iloc[0]!r}")
