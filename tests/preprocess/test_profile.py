"""profile: the task, class counts and profile layout shared by ingest's table, image and sequence paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.profile import Rows, Target, build_profile, class_counts, column_profile, resolve_target


def test_class_counts_sort_classes_and_key_them_as_text() -> None:
    assert class_counts(pd.Series([10, 2, 2, 10, 10])) == {"2": 2, "10": 3}
    assert list(class_counts(pd.Series(["b", "a", "b"]))) == ["a", "b"]


def test_auto_task_is_inferred_with_its_reason_and_counts_or_summary() -> None:
    found = resolve_target(pd.Series(["x", "y", "x"], name="t"), "auto", "data", "column")
    assert (found.task, found.class_counts, found.summary) == ("classification", {"x": 2, "y": 1}, None)
    assert found.reason == "the target holds str labels"
    numbers = pd.Series(np.linspace(0.0, 1.0, 30), name="t")
    found = resolve_target(numbers, "auto", "data", "column")
    assert (found.task, found.class_counts) == ("regression", None)
    assert found.summary["mean"] == pytest.approx(0.5) and "count" not in found.summary


def test_a_set_task_says_so_and_overrides_inference() -> None:
    found = resolve_target(pd.Series([0.5, 1.5, 0.5], name="t"), "classification", "data", "column")
    assert (found.task, found.reason, found.class_counts) == ("classification", "set in data.task", {"0.5": 2, "1.5": 1})


@pytest.mark.parametrize(("noun", "got"), [("column", "got str values"), ("array", "got str")])
def test_regression_on_text_names_the_column_or_array(noun: str, got: str) -> None:
    with pytest.raises(PipelineError, match=rf"^data.task = 'regression': {noun} 't' in src: expected numbers, {got}$"):
        resolve_target(pd.Series(["a", "b"], name="t"), "regression", "src", noun)


def test_a_single_class_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"^src: array 't': expected at least 2 classes, got \[1\]$"):
        resolve_target(pd.Series([1, 1], name="t"), "auto", "src", "array")


def test_profile_keys_keep_their_order_with_image_entries_after_the_task() -> None:
    rows = Rows(loaded=5, missing_target=1, duplicate=0, kept=4, duplicates="keep", repeated=1, groups=1)
    target = Target("classification", "why", {"a": 4}, None)
    table = build_profile("src", rows, target, {"id": "listed in data.drop"}, {"t": {}})
    assert list(table) == [
        "source", "rows_loaded", "rows_dropped_missing_target", "rows_dropped_duplicate", "rows", "duplicates",
        "rows_repeated", "repeated_groups", "task", "task_reason", "columns_dropped", "columns", "class_counts",
        "target_summary",
    ]
    assert (table["rows"], table["rows_repeated"], table["class_counts"]) == (4, 1, {"a": 4})
    image = build_profile("src", rows, target, {}, {}, "image", image_shape=[1, 2, 2], pixels={})
    assert list(image)[:2] == ["source", "modality"] and image["modality"] == "image"
    assert list(image)[10:13] == ["task_reason", "image_shape", "pixels"]


def test_column_profile_names_the_target_features_and_keys() -> None:
    kept = pd.DataFrame({"sid": ["s", "s"], "x": [1.0, np.nan], "t": ["a", "b"]})
    assert column_profile(kept, "t", {"x": "numeric"}) == {
        "sid": {"dtype": str(kept["sid"].dtype), "kind": "key", "missing": 0},
        "x": {"dtype": "float64", "kind": "numeric", "missing": 1},
        "t": {"dtype": str(kept["t"].dtype), "kind": "target", "missing": 0},
    }
