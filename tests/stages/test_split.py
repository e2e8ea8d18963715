"""split: seeded, stratified, disjoint train/val/test parts; repeated rows kept row by row or grouped."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema
from pipeline.stages.split import assign, row_groups, split_any, summarise
from tests.factories import MakeParams, build_params

SCHEMA = Schema("label", (("sex", "categorical"), ("cls", "numeric"), ("age", "categorical")), "classification")
# a time split of tables: the latest 20% of rows to test, the 20% before them to val
TIME_SPLIT = {"method": "time", "time_column": "when", "val": 0.2, "test": 0.2}


def split(
    frame: pd.DataFrame, target: str, val: float, test: float, seed: int, stratify: bool = True
) -> dict[str, pd.DataFrame]:
    """A table split as the stage splits it (:func:`split_any`, method random, repeated rows kept): stratified
    by ``target`` (classification) unless ``stratify`` is off (regression)."""
    features = tuple((c, "numeric") for c in frame.columns if c != target)
    schema = Schema(target, features, "classification" if stratify else "regression")
    parts, images = split_any(frame, None, schema, build_params(seed=seed, split={"val": val, "test": test}))
    assert images is None
    return parts


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


def test_time_split_of_a_table_puts_the_latest_rows_in_test(make_params: MakeParams) -> None:
    from pipeline.preprocess.schema import Schema
    from pipeline.stages.split import split_any

    # 10 rows out of time order; ISO dates as text, as ingest keeps them
    days = [5, 1, 9, 3, 7, 2, 8, 4, 10, 6]
    frame = pd.DataFrame({"when": [f"2024-01-{d:02d}" for d in days], "x": days, "label": ["a", "b"] * 5})
    schema = Schema("label", (("when", "date"), ("x", "numeric")), "classification")
    parts, images = split_any(frame, None, schema, make_params(split=TIME_SPLIT))
    assert images is None
    assert sorted(parts["train"]["x"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(parts["val"]["x"]) == [7, 8] and sorted(parts["test"]["x"]) == [9, 10]
    assert parts["train"]["x"].tolist() == [5, 1, 3, 2, 4, 6]  # original order kept within a part


def test_time_split_names_a_time_column_that_is_not_there(make_params: MakeParams) -> None:
    from pipeline.preprocess.schema import Schema
    from pipeline.stages.split import split_any

    frame = pd.DataFrame({"x": range(10), "label": ["a", "b"] * 5})
    schema = Schema("label", (("x", "numeric"),), "classification")
    with pytest.raises(PipelineError, match=r"^split.time_column = 'when': column not found in the ingested data; "
                                            r"expected one of \['x', 'label'\]$"):
        split_any(frame, None, schema, make_params(split=TIME_SPLIT))


# --- repeated rows ------------------------------------------------------------------------------------------------


def _shuffle_and_cut(labels: np.ndarray, val: float, test: float, seed: int, stratify: bool) -> dict[str, np.ndarray]:
    """The split as drawn before repeated rows were grouped: per class, shuffle the positions and cut."""
    rng = np.random.default_rng(seed)
    strata = labels if stratify else np.zeros(len(labels), dtype=int)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in sorted(pd.unique(strata), key=str):
        rows = rng.permutation(np.flatnonzero(strata == cls))
        n_test, n_val = round(len(rows) * test), round(len(rows) * val)
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@pytest.mark.parametrize("case", range(40))
def test_without_repeated_rows_groups_change_nothing(case: int) -> None:
    # the bundled datasets have no repeated rows: their splits, and the README's figures, must not move
    rng = np.random.default_rng(case)
    n = int(rng.integers(20, 2000))
    frame = pd.DataFrame({"x": rng.normal(size=n), "label": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])})
    val, test, stratify = float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.05, 0.3)), bool(case % 2)
    labels = frame["label"].to_numpy()
    expected = _shuffle_and_cut(labels, val, test, case, stratify)
    for groups in (None, row_groups(frame.drop(columns=["label"])), row_groups(frame)):
        got = assign(labels, val, test, case, stratify, groups)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])


def _coarse(rows: int = 1300, seed: int = 0) -> pd.DataFrame:
    """Few coarse columns, so most rows repeat an earlier one; the label depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"sex": rng.choice(["f", "m"], rows), "cls": rng.choice([1, 2, 3], rows),
                          "age": rng.choice(["child", "adult", "old"], rows)})
    chance = 0.2 + 0.5 * (frame["sex"] == "f") + 0.2 * (frame["cls"] == 1)
    frame["label"] = np.where(rng.random(rows) < chance, "yes", "no")
    return frame


def _inputs(part: pd.DataFrame) -> set[tuple]:
    return set(part[["sex", "cls", "age"]].itertuples(index=False, name=None))


def test_keep_splits_repeated_rows_row_by_row_as_separate_examples(make_params: MakeParams) -> None:
    frame = _coarse()
    labels = frame["label"].to_numpy()
    parts, _ = split_any(frame, None, SCHEMA, make_params(seed=0, data={"duplicates": "keep"}))
    expected = _shuffle_and_cut(labels, 0.15, 0.2, 0, True)  # the plain split: copies fall where they fall
    for name, part in parts.items():
        pd.testing.assert_frame_equal(part, frame.iloc[expected[name]].reset_index(drop=True))
    assert _inputs(parts["test"]) <= _inputs(parts["train"])  # 12 input combinations: all of them in train


@pytest.mark.parametrize("seed", range(5))
def test_group_never_puts_the_same_inputs_in_two_parts(make_params: MakeParams, seed: int) -> None:
    frame = _coarse(seed=seed)
    parts, _ = split_any(frame, None, SCHEMA, make_params(seed=seed, data={"duplicates": "group"}))
    assert sum(len(part) for part in parts.values()) == len(frame)
    train, val, test = (_inputs(parts[name]) for name in ("train", "val", "test"))
    assert not train & test and not train & val and not val & test
    full = {name: set(part.itertuples(index=False, name=None)) for name, part in parts.items()}
    assert not full["test"] & full["train"]  # so no test row has an exact copy in train


def test_group_keeps_class_shares_and_part_sizes_roughly(make_params: MakeParams) -> None:
    # many inputs, most shown a few times: whole groups can match each part's share closely
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.integers(0, 400, 4000)})
    frame["label"] = np.where(frame["x"] % 4 == 0, "rare", "common")
    parts, _ = split_any(frame, None, Schema("label", (("x", "numeric"),), "classification"),
                         make_params(seed=0, data={"duplicates": "group"}))
    share = (frame["label"] == "rare").mean()
    for name, fraction in (("train", 0.65), ("val", 0.15), ("test", 0.2)):
        assert abs(len(parts[name]) / len(frame) - fraction) < 0.02, (name, len(parts[name]))
        assert abs((parts[name]["label"] == "rare").mean() - share) < 0.03, name


@pytest.mark.parametrize(("sizes", "want", "taken"), [
    ([1, 1, 1, 1], 2, 2),  # rows of their own: exactly the share
    ([6, 1, 1, 1, 1], 2, 0),  # 6 rows would miss a share of 2 by 4, taking nothing misses it by 2
    ([1, 6, 1, 1], 2, 1),  # the front only: the single rows behind the 6 are not picked out
    ([1, 1, 6, 1], 2, 2),
    ([3, 5, 1], 2, 1),  # 3 rows miss by 1, none by 2: nearer
    ([2, 2, 1], 3, 1),  # a tie (4 rows or 2 for a share of 3) stays short
    ([5], 2, 0),  # the last group of a class stays in train
    ([1, 1], 2, 1),
])
def test_a_part_takes_whole_groups_from_the_front_to_the_nearest_share(sizes: list[int], want: int, taken: int) -> None:
    from pipeline.stages.split import _taken

    assert _taken(np.array(sizes), want) == taken


def test_group_leaves_the_last_group_of_a_class_to_train() -> None:
    # class b: one group of 3 rows; a test share of round(3 * 0.4) = 1 row could take it, leaving train none of b
    labels = np.array(["a"] * 10 + ["b"] * 3)
    groups = np.array(list(range(10)) + [10] * 3)
    for seed in range(10):
        parts = assign(labels, 0.2, 0.4, seed, groups=groups)
        assert set(parts["train"].tolist()) >= {10, 11, 12}


def test_group_refuses_a_class_whose_rows_all_share_inputs_with_another(make_params: MakeParams) -> None:
    # both 'b' rows have the inputs of an earlier 'a' row (x = 0): that group counts for 'a', and some draws send it
    # to val or test, leaving train no 'b'
    frame = pd.DataFrame({"x": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0], "label": ["a"] * 10 + ["b"] * 2})
    schema = Schema("label", (("x", "numeric"),), "classification")
    seeds = []
    for seed in range(20):
        try:
            parts, _ = split_any(frame, None, schema, make_params(seed=seed, data={"duplicates": "group"}))
        except PipelineError as exc:
            assert str(exc) == ("data.duplicates = 'group': class(es) ['b'] have no train row, as each of their rows "
                                "has the inputs of an earlier row of another class and stays with it; expected every "
                                "class in train (use data.duplicates: keep)")
            seeds.append(seed)
        else:
            assert "b" in parts["train"]["label"].tolist()
    assert seeds, "no seed drew the shared group away from train"


def test_time_split_ignores_grouping(make_params: MakeParams) -> None:
    # order alone decides a time split: copies share their time, only a tie at a boundary can part them
    frame = pd.DataFrame({"when": [1, 2, 3, 4, 5, 5, 5, 6, 7, 8], "label": ["a", "b"] * 5})
    schema = Schema("label", (("when", "numeric"),), "classification")
    keep, _ = split_any(frame, None, schema, make_params(seed=0, split=TIME_SPLIT, data={"duplicates": "keep"}))
    group, _ = split_any(frame, None, schema, make_params(seed=0, split=TIME_SPLIT, data={"duplicates": "group"}))
    for name in keep:
        pd.testing.assert_frame_equal(keep[name], group[name])


def test_summary_counts_repeated_rows_per_part() -> None:
    frame = pd.DataFrame({"x": [1, 1, 1, 2, 3, 3], "label": ["a", "a", "a", "a", "b", "b"]})
    parts = {"train": frame.iloc[:4], "val": frame.iloc[4:5], "test": frame.iloc[5:]}
    summary = summarise(parts, Schema("label", (("x", "numeric"),), "classification"))
    assert [summary[name]["rows_repeated"] for name in parts] == [2, 0, 0]  # the copies split across val and test
