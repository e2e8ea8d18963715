"""The search's plots: each trial's objective and the best so far, the keys' importances, and the objective
against each searched key.

Pure functions of plain data (trial numbers, values, decoded params), not of an Optuna study, each writing one
titled PNG (matplotlib's Agg backend, written atomically, as :mod:`pipeline.evaluation.plots`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pipeline.reporting import _pyplot, _save


def _nothing(path: Path, title: str, what: str) -> None:
    """A figure that says there is nothing to plot, so a report's image is never missing."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.text(0.5, 0.5, what, ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(title)
    _save(fig, path)


def history_png(path: Path, numbers: list[int], values: list[float | None],
                direction: Literal["minimize", "maximize"], metric: str, title: str) -> None:
    """Each finished trial's objective against its number, and the best so far as a step line.

    Args:
        path: The PNG to write.
        numbers: Trial numbers.
        values: Each trial's objective; None for a pruned or failed trial (counted in the legend, not drawn).
        direction: Whether lower or higher is better.
        metric: The objective's name (the y axis).
        title: The figure's title.
    """
    done = [(n, v) for n, v in zip(numbers, values, strict=True) if v is not None and math.isfinite(v)]
    if not done:
        _nothing(path, title, "no finished trial")
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs, ys = zip(*done, strict=True)
    ax.scatter(xs, ys, s=18, label=f"finished trial ({len(done)})")
    better = min if direction == "minimize" else max
    best = [better(ys[: i + 1]) for i in range(len(ys))]
    ax.step(xs, best, where="post", color="tab:red", label="best so far")
    left = len(values) - len(done)
    if left:
        ax.plot([], [], " ", label=f"pruned or failed, not drawn ({left})")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def importances_png(path: Path, importances: dict[str, float], title: str) -> None:
    """Each searched key's importance as a horizontal bar, the largest on top."""
    if not importances:
        _nothing(path, title, "no importances (too few finished trials)")
        return
    plt = _pyplot()
    ranked = sorted(importances.items(), key=lambda kv: kv[1])  # barh draws the first at the bottom
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(ranked)))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked], color="tab:blue")
    ax.set_xlabel("importance (share of the objective's variance)")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def slices_png(path: Path, rows: list[dict[str, Any]], values: list[float | None], keys: list[str], metric: str,
               title: str, log_keys: set[str] | frozenset[str] = frozenset()) -> None:
    """The objective against each searched key's value, one panel per key.

    Args:
        path: The PNG to write.
        rows: Each trial's decoded params (a key a trial left unread is missing from its row).
        values: Each trial's objective (None: pruned or failed, left out).
        keys: The searched keys, one panel each.
        metric: The objective's name (the y axis).
        title: The figure's title.
        log_keys: Keys searched on a log scale (their x axis is logarithmic).
    """
    done = [(row, v) for row, v in zip(rows, values, strict=True) if v is not None and math.isfinite(v)]
    if not done or not keys:
        _nothing(path, title, "no finished trial")
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(row[key], v) for row, v in done if key in row]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points)
        if numeric:
            ax.scatter([x for x, _ in points], [v for _, v in points], s=14)
            if key in log_keys and all(x > 0 for x, _ in points):
                ax.set_xscale("log")
        else:  # categorical: each choice's text at its own position, in order of first appearance
            labels = list(dict.fromkeys(_label(x) for x, _ in points))
            ax.scatter([labels.index(_label(x)) for x, _ in points], [v for _, v in points], s=14)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
