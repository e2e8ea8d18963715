"""split: seeded, stratified, disjoint train/val/test parts."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.stages.split import split


def _frame() -> pd.DataFrame:
    # 30 rows: class a 20 rows, class b 10 rows, interleaved a a b
    return pd.DataFrame({"id": range(30), "bill": [float(i) / 2 for i in range(30)], "label": ["a", "a", "b"] * 10})


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_split_is_stratified(seed: int) -> None:
    parts = split(_frame(), "label", val=0.2, test=0.3, seed=seed)
    # rounding rule per class: a (20 rows): test 6, val 4, train 10; b (10 rows): test 3, val 2, train 5
    expected = {"train": {"a": 10, "b": 5}, "val": {"a": 4, "b": 2}, "test": {"a": 6, "b": 3}}
    for name, counts in expected.items():
        got = parts[name]["label"].value_counts().to_dict()
        for cls, n in counts.items():
            assert abs(got.get(cls, 0) - n) <= 1, (name, cls, got)


def test_parts_are_disjoint_cover_all_rows_and_keep_order() -> None:
    frame = _frame()
    parts = split(frame, "label", val=0.2, test=0.3, seed=0)
    assert list(parts) == ["train", "val", "test"]
    ids = {name: part["id"].tolist() for name, part in parts.items()}
    assert sum(len(v) for v in ids.values()) == 30
    assert set(ids["train"]) | set(ids["val"]) | set(ids["test"]) == set(range(30))
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    for name, part in parts.items():
        assert ids[name] == sorted(ids[name])
        assert list(part.index) == list(range(len(part)))
        assert part["bill"].tolist() == [i / 2 for i in ids[name]]  # whole rows travel together
        assert part["label"].tolist() == ["b" if i % 3 == 2 else "a" for i in ids[name]]


def test_same_seed_gives_same_split() -> None:
    first = split(_frame(), "label", 0.2, 0.3, seed=11)
    second = split(_frame(), "label", 0.2, 0.3, seed=11)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first[name], second[name])


def test_different_seed_gives_different_split() -> None:
    first = split(_frame(), "label", 0.2, 0.3, seed=0)
    second = split(_frame(), "label", 0.2, 0.3, seed=1)
    assert first["test"]["id"].tolist() != second["test"]["id"].tolist()


def test_single_row_class_stays_in_train() -> None:
    frame = pd.DataFrame({"id": range(11), "label": ["a"] * 10 + ["c"]})
    parts = split(frame, "label", val=0.2, test=0.2, seed=0)
    assert parts["train"]["label"].tolist().count("c") == 1
    assert "c" not in parts["val"]["label"].tolist() + parts["test"]["label"].tolist()


def test_class_too_small_to_leave_a_train_row_is_refused() -> None:
    # class c has 2 rows: round(0.6) = 1 to test and 1 to val, none left for train
    frame = pd.DataFrame({"id": range(12), "label": ["a"] * 10 + ["c"] * 2})
    with pytest.raises(PipelineError, match=r"split\.val = 0\.3, split\.test = 0\.3: class 'c' has 2 examples"):
        split(frame, "label", val=0.3, test=0.3, seed=0)


def test_empty_part_is_refused() -> None:
    # 4 rows per class: round(4 * 0.1) = 0 rows to val for every class
    frame = pd.DataFrame({"id": range(8), "label": ["a", "b"] * 4})
    with pytest.raises(PipelineError, match=r"split\.val: expected a non-empty val split from 8 examples"):
        split(frame, "label", val=0.1, test=0.3, seed=0)


def test_regression_split_is_random_not_stratified() -> None:
    frame = pd.DataFrame({"x": range(40), "y": [float(v) for v in range(40)]})
    parts = split(frame, "y", val=0.25, test=0.25, seed=0, stratify=False)
    assert [len(parts[name]) for name in ("train", "val", "test")] == [20, 10, 10]
    assert sorted(pd.concat(parts.values())["x"]) == list(range(40))


def _time_params(default_params: dict, column: str | None = "when") -> object:
    from pipeline.config import parse_params

    default_params["split"].update(method="time", time_column=column, val=0.2, test=0.2)
    return parse_params(default_params)


def test_time_split_of_a_table_puts_the_latest_rows_in_test(default_params: dict) -> None:
    from pipeline.preprocess.schema import Schema
    from pipeline.stages.split import split_any

    # 10 rows out of time order; ISO dates as text, as ingest keeps them
    days = [5, 1, 9, 3, 7, 2, 8, 4, 10, 6]
    frame = pd.DataFrame({"when": [f"2024-01-{d:02d}" for d in days], "x": days, "label": ["a", "b"] * 5})
    schema = Schema("label", (("when", "date"), ("x", "numeric")), "classification")
    parts, images = split_any(frame, None, schema, _time_params(default_params))
    assert images is None
    assert sorted(parts["train"]["x"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(parts["val"]["x"]) == [7, 8] and sorted(parts["test"]["x"]) == [9, 10]
    assert parts["train"]["x"].tolist() == [5, 1, 3, 2, 4, 6]  # original order kept within a part


def test_time_split_names_a_time_column_that_is_not_there(default_params: dict) -> None:
    from pipeline.preprocess.schema import Schema
    from pipeline.stages.split import split_any

    frame = pd.DataFrame({"x": range(10), "label": ["a", "b"] * 5})
    schema = Schema("label", (("x", "numeric"),), "classification")
    with pytest.raises(PipelineError, match=r"^split.time_column = 'when': column not found in the ingested data; "
                                            r"expected one of \['x', 'label'\]$"):
        split_any(frame, None, schema, _time_params(default_params))
