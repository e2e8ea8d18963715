"""The raw test input as ``predict`` takes it, and the train/serve skew guard on it.

Predictions come from the bundle applied to the raw test rows, the same path ``predict`` takes, and are checked
against the network applied to the scale stage's test matrix: the bundle's preprocessing must be the stages'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import read_parquet

if TYPE_CHECKING:  # the bundle imports torch: loaded where a bundle is, not to read a type
    from pipeline.bundle import ModelBundle


@dataclass(frozen=True)
class TestInput:
    """The split stage's test rows, before any cleaning or scaling.

    Attributes:
        raw: What ``predict`` gets: rows, long-format rows, or the image array.
        source: The file ``raw`` was read from, named in the bundle's errors.
        actual: The labels or values: one per row, per image, or per series (indexed by series id).
    """

    __test__ = False  # not a pytest test class, despite the name

    raw: pd.DataFrame | np.ndarray
    source: str
    actual: pd.Series


def read_test_input(bundle: ModelBundle, split_dir: Path, target: str) -> TestInput:
    """The raw test input of the bundle's modality from the split stage's folder."""
    test = read_parquet(Path(split_dir) / "test.parquet")
    examples = replace(bundle.examples, target=target)
    actual = examples.labels(test)
    images = examples.read_array(split_dir, "test")
    if images is not None:
        return TestInput(images, str(Path(split_dir) / "test.npy"), actual)
    return TestInput(test.drop(columns=[target]), str(Path(split_dir) / "test.parquet"), actual)


def checked_logits(bundle: ModelBundle, model_dir: Path, test: TestInput,
                   x_scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """The network's outputs on the raw test input, checked against its outputs on the scaled test matrix.

    Returns:
        The prepared raw input, the network's outputs on it, and the index ``prepare`` gave its rows.

    Raises:
        PipelineError: If the two disagree on any row (a label for classification, a value for regression).
    """
    from_stages = bundle.logits(x_scaled)
    x_raw, index = bundle.prepare(test.raw, test.source)  # the path predict takes
    from_raw = bundle.logits(x_raw)
    skewed = (from_stages.argmax(axis=1) != from_raw.argmax(axis=1)) if bundle.task == "classification" else (
        ~np.isclose(from_stages[:, 0], from_raw[:, 0], rtol=1e-5, atol=1e-5))
    if skewed.any():
        raise PipelineError(
            f"{model_dir}: predictions from raw test rows differ from the scaled test matrix on {int(skewed.sum())} "
            "rows; the bundle's preprocessing does not match the stages'"
        )
    return x_raw, from_raw, index
