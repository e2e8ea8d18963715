"""Sequences through ingest, split and clean: one label per series, whole series per part, fills along time."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.schema import Schema
from pipeline.stages.clean import clean
from pipeline.stages.ingest import ingest_sequences
from pipeline.stages.split import split_sequences
from tests.factories import MakeCleanConfig

NAN = np.nan
SCHEMA = Schema("y", (("x", "numeric"),), "classification", "sequence", "sid", "t")


@pytest.fixture
def config(make_clean_config: MakeCleanConfig) -> MakeCleanConfig:
    """``make_clean_config`` with no rebalancing unless a test asks for it."""
    return functools.partial(make_clean_config, imbalance="none")


def _series(rows: list[tuple[str, list[float], str]]) -> pd.DataFrame:
    """Ordered long-format rows from ``(id, values of x, label)`` triples; times count 0, 1, 2, ...

    Args:
        rows: One triple per series.

    Returns:
        A frame with columns ``sid``, ``t``, ``x`` and ``y``.
    """
    parts = [
        pd.DataFrame({"sid": name, "t": np.arange(len(values)), "x": values, "y": label})
        for name, values, label in rows
    ]
    return pd.concat(parts, ignore_index=True)


# ingest_sequences


def _raw() -> pd.DataFrame:
    """Long rows as loaded: out of order, numeric ids, labels on some rows only.

    Series 2 (label B on one row), 1 (label A on one row), 3 (no label anywhere: dropped) and 5 (A, 3 steps).
    """
    return pd.DataFrame(
        {
            "sid": [2, 1, 2, 1, 3, 3, 5, 5, 5],
            "t": [1, 1, 0, 0, 0, 1, 2, 0, 1],
            "x": [0.2, 0.1, 0.0, 1.0, 3.0, 3.1, 5.2, 5.0, 5.1],
            "y": ["B", None, None, "A", None, None, "A", "A", "A"],
        }
    )


def test_ingest_sequences_orders_rows_and_fills_each_series_label() -> None:
    kept, schema, _ = ingest_sequences(_raw(), "y", "sid", "t")
    expected = pd.DataFrame(
        {
            "sid": ["2", "2", "1", "1", "5", "5", "5"],  # first appearance, ids as text; series 3 is gone
            "t": [0, 1, 0, 1, 0, 1, 2],
            "x": [0.0, 0.2, 1.0, 0.1, 5.0, 5.1, 5.2],
            "y": ["B", "B", "A", "A", "A", "A", "A"],
        }
    )
    pd.testing.assert_frame_equal(kept, expected, check_dtype=False)
    assert kept["sid"].map(type).eq(str).all()
    assert list(kept.index) == list(range(7))
    assert schema == Schema("y", (("x", "numeric"),), "classification", "sequence", "sid", "t")


def test_ingest_sequences_profiles_series() -> None:
    _, _, profile = ingest_sequences(_raw(), "y", "sid", "t", source="walks")
    assert profile["modality"] == "sequence"
    assert profile["series"] == 3
    assert profile["series_length"] == {"min": 2, "median": 2.0, "max": 3}
    assert profile["class_counts"] == {"A": 2, "B": 1}  # per series, not per row (A would be 5 rows)
    assert profile["class_counts_unit"] == "series"
    assert profile["rows_dropped_missing_target"] == 2  # series 3's two rows
    assert profile["source"] == "walks"


def test_ingest_sequences_parses_iso_times_and_sorts_by_them() -> None:
    raw = pd.DataFrame(
        {
            "sid": ["a", "a", "a", "b", "b"],
            "t": ["2024-01-10", "2024-01-02", "2024-01-05", "2024-02-01", "2024-01-01"],
            "x": [3.0, 1.0, 2.0, 5.0, 4.0],
            "y": ["A", "A", "A", "B", "B"],
        }
    )
    kept, _, _ = ingest_sequences(raw, "y", "sid", "t")
    assert pd.api.types.is_datetime64_any_dtype(kept["t"])
    assert kept["x"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_ingest_sequences_drops_exact_duplicate_steps() -> None:
    raw = pd.concat([_raw(), _raw().iloc[[6]]], ignore_index=True)  # series 5, t 2 twice, same values
    kept, _, profile = ingest_sequences(raw, "y", "sid", "t")
    assert profile["rows_dropped_duplicate"] == 1
    assert len(kept) == 7


def _error(raw: pd.DataFrame, series: str = "sid", time: str = "t") -> str:
    """The one-line message ingest_sequences refuses ``raw`` with.

    Args:
        raw: Long rows as loaded.
        series: The series column to name.
        time: The time column to name.

    Returns:
        The message, checked to be one line.
    """
    with pytest.raises(PipelineError) as info:
        ingest_sequences(raw, "y", series, time, source="walks.csv")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_ingest_sequences_refuses_a_label_that_changes_within_a_series() -> None:
    raw = _raw()
    raw.loc[7, "y"] = "B"  # series 5: A, B, A
    message = _error(raw)
    assert message.startswith("walks.csv: column 'y': label changes within series '5'")
    assert "['A', 'B']" in message and "expected one label per series" in message


def test_ingest_sequences_refuses_a_series_with_a_single_step() -> None:
    raw = pd.concat([_raw(), pd.DataFrame({"sid": [9], "t": [0], "x": [9.0], "y": ["B"]})], ignore_index=True)
    message = _error(raw)
    assert message.startswith("walks.csv: series '9' has 1 time step; expected at least 2 per series")


def test_ingest_sequences_refuses_a_missing_series_id() -> None:
    raw = _raw().astype({"sid": "float64"})
    raw.loc[4, "sid"] = NAN
    message = _error(raw)
    assert message.startswith("walks.csv: column 'sid' (data.sequence.id): expected a value on every row, got 1 empty")


def test_ingest_sequences_refuses_a_missing_time() -> None:
    raw = _raw().astype({"t": "float64"})
    raw.loc[[0, 1], "t"] = NAN
    message = _error(raw)
    assert message.startswith("walks.csv: column 't' (data.sequence.time): expected a value on every row, got 2 empty")


@pytest.mark.parametrize(("key", "series", "time"), [("id", "series", "t"), ("time", "sid", "step")])
def test_ingest_sequences_refuses_an_absent_key_column(key: str, series: str, time: str) -> None:
    missing = series if key == "id" else time
    message = _error(_raw(), series, time)
    assert message.startswith(f"data.sequence.{key} = {missing!r}: column not found in walks.csv")
    assert "['sid', 't', 'x', 'y']" in message


def test_ingest_sequences_refuses_a_repeated_time_step_with_different_values() -> None:
    raw = pd.concat(
        [_raw(), pd.DataFrame({"sid": [1], "t": [0], "x": [99.0], "y": ["A"]})], ignore_index=True
    )  # series 1 at t 0 holds x 1.0 already
    message = _error(raw)
    assert message.startswith("walks.csv: series '1' has time 0 on more than one row with different values")
    assert "expected one row per (series, time step)" in message


@pytest.mark.parametrize(
    "times",
    [[1, 1, 0, 0, 0, 1, 2, "soon", 1], ["2024-01-02", "2024-01-02", "2024-01-01", "2024-01-01", "2024-01-01",
                                         "2024-01-02", "2024-01-03", "soon", "2024-01-02"]],
    ids=["numbers", "dates"],
)
def test_ingest_sequences_refuses_a_time_that_is_neither_number_nor_date(times: list[object]) -> None:
    raw = _raw().astype({"t": "object"})
    raw["t"] = pd.Series(times, dtype="object")
    message = _error(raw)
    assert message.startswith("walks.csv: column 't': expected numbers or ISO dates")
    assert message.endswith("'soon'")


def test_ingest_sequences_refuses_a_key_that_is_the_target() -> None:
    message = _error(_raw(), "sid", "y")
    assert message.startswith("data.sequence.time = 'y': expected a column that is neither data.target")


def test_ingest_sequences_refuses_a_blank_series_id() -> None:
    raw = _raw().astype({"sid": "object"})
    raw.loc[[6, 7, 8], "sid"] = " "  # series 5's rows (labelled A) with a blank id
    with pytest.raises(PipelineError, match=r"column 'sid' \(data\.sequence\.id\): expected a value on every row"):
        ingest_sequences(raw, "y", "sid", "t", source="walks.csv")


def test_ingest_sequences_refuses_an_absent_target_column() -> None:
    with pytest.raises(PipelineError, match=r"data\.target = 'label': column not found in walks\.csv"):
        ingest_sequences(_raw(), "label", "sid", "t", source="walks.csv")


# split_sequences


def _many() -> pd.DataFrame:
    """Twenty series: s0..s11 class A, s12..s19 class B, 2 to 4 steps each, starts shuffled in time.

    Series ``sK`` starts at time ``START[K]`` (a permutation of 0..19 times 10), so start order is not id order.
    """
    rows = []
    for k in range(20):
        for step in range(2 + k % 3):
            rows.append({"sid": f"s{k}", "t": START[k] + step, "x": float(k) + step / 10, "y": "A" if k < 12 else "B"})
    return pd.DataFrame(rows)


START = [int(v) * 10 for v in np.random.default_rng(7).permutation(20)]


def _ids(part: pd.DataFrame) -> set[str]:
    """The series ids in a part.

    Args:
        part: Long rows.

    Returns:
        The set of ids.
    """
    return set(part["sid"].unique())


def test_split_sequences_keeps_every_series_whole_in_one_part() -> None:
    frame = _many()
    parts = split_sequences(frame, SCHEMA, val=0.25, test=0.25, seed=0)
    assert list(parts) == ["train", "val", "test"]
    ids = {name: _ids(part) for name, part in parts.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == _ids(frame)
    assert sum(len(part) for part in parts.values()) == len(frame)
    steps = frame.groupby("sid").size()
    for part in parts.values():
        assert part.groupby("sid").size().to_dict() == steps[list(_ids(part))].to_dict()  # no series cut short
        assert list(part.index) == list(range(len(part)))
        # rows keep their order: each series still contiguous and in time order
        assert part.equals(frame.loc[frame["sid"].isin(_ids(part))].reset_index(drop=True))


def test_split_sequences_is_stratified_by_series_label() -> None:
    parts = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=3)
    # per class, over series: A (12): test 3, val 3, train 6; B (8): test 2, val 2, train 4
    expected = {"train": {"A": 6, "B": 4}, "val": {"A": 3, "B": 2}, "test": {"A": 3, "B": 2}}
    for name, counts in expected.items():
        assert parts[name].groupby("sid")["y"].first().value_counts().to_dict() == counts


def test_split_sequences_is_seeded() -> None:
    first = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=11)
    again = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=11)
    other = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=12)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first[name], again[name])
    assert _ids(first["test"]) != _ids(other["test"])


def test_split_sequences_by_time_puts_the_latest_starting_series_in_test() -> None:
    frame = _many()
    parts = split_sequences(frame, SCHEMA, val=0.25, test=0.25, seed=0, method="time")
    by_start = sorted(range(20), key=lambda k: START[k])
    expected = {
        "train": {f"s{k}" for k in by_start[:10]},
        "val": {f"s{k}" for k in by_start[10:15]},
        "test": {f"s{k}" for k in by_start[15:]},
    }
    assert {name: _ids(part) for name, part in parts.items()} == expected
    start = {name: part.groupby("sid")["t"].min() for name, part in parts.items()}
    assert start["train"].max() < start["val"].min() and start["val"].max() < start["test"].min()


def test_split_sequences_by_time_ignores_the_seed() -> None:
    first = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=0, method="time")
    second = split_sequences(_many(), SCHEMA, val=0.25, test=0.25, seed=99, method="time")
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first[name], second[name])


def test_split_sequences_by_time_refuses_a_class_that_only_comes_late() -> None:
    frame = _many()
    latest = f"s{int(np.argmax(START))}"
    frame.loc[frame["sid"] == latest, "y"] = "C"
    with pytest.raises(PipelineError, match=r"split\.method = 'time': class\(es\) \['C'\] occur only after the train"):
        split_sequences(frame, SCHEMA, val=0.25, test=0.25, seed=0, method="time")


# clean


def _gappy() -> dict[str, pd.DataFrame]:
    """Splits with gaps in x.

    Train observes x = 1, 3, 2, 8 (median 2.5); ``s3`` never observes x. Val and test hold values far from
    train's, so a fill learned from them would show.
    """
    return {
        "train": _series([("s1", [NAN, 1.0, NAN, 3.0], "A"), ("s2", [2.0, NAN, 8.0], "A"), ("s3", [NAN, NAN], "B")]),
        "val": _series([("v1", [NAN, 40.0], "A"), ("v2", [NAN, NAN], "B")]),
        "test": _series([("t1", [50.0, NAN, 70.0], "B"), ("t2", [NAN, NAN, 90.0], "A")]),
    }


@pytest.mark.parametrize(
    ("method", "train", "val", "test"),
    [
        (
            "ffill",
            [1.0, 1.0, 1.0, 3.0, 2.0, 2.0, 8.0, 2.5, 2.5],
            [40.0, 40.0, 2.5, 2.5],
            [50.0, 50.0, 70.0, 90.0, 90.0, 90.0],
        ),
        (
            "interpolate",
            [1.0, 1.0, 2.0, 3.0, 2.0, 5.0, 8.0, 2.5, 2.5],
            [40.0, 40.0, 2.5, 2.5],
            [50.0, 60.0, 70.0, 90.0, 90.0, 90.0],
        ),
    ],
)
def test_clean_fills_gaps_along_time_within_each_series(
    config: MakeCleanConfig, method: str, train: list[float], val: list[float], test: list[float]
) -> None:
    cleaned, imputer, report = clean(_gappy(), SCHEMA, config(numeric=method), seed=0)
    assert imputer.statistics_ == {"x": 2.5}  # the fallback for a series that never observes x
    assert cleaned["train"]["x"].tolist() == pytest.approx(train)
    assert cleaned["val"]["x"].tolist() == pytest.approx(val)
    assert cleaned["test"]["x"].tolist() == pytest.approx(test)
    for name, part in cleaned.items():
        assert list(part.columns) == ["sid", "t", "x", "y"]
        assert part["sid"].tolist() == _gappy()[name]["sid"].tolist()
        assert part["t"].tolist() == _gappy()[name]["t"].tolist()
    assert report["filled"] == {"train": {"x": 5}, "val": {"x": 3}, "test": {"x": 3}}
    assert report["class_counts_unit"] == "series"


def test_clean_drop_rows_drops_whole_incomplete_train_series_only(config: MakeCleanConfig) -> None:
    splits = {
        # s1 has one gap: all of s1 goes, not just its gap; median of x over s2 and s3 (2, 4, 6, 8) is 5, and
        # s1's observed value is 5 too, so the fill value does not depend on whether s1's rows count
        "train": _series([("s1", [5.0, NAN, 5.0], "A"), ("s2", [2.0, 4.0], "A"), ("s3", [6.0, 8.0], "B")]),
        "val": _series([("v1", [NAN, 3.0], "A"), ("v2", [1.0, 1.0], "B")]),
        "test": _series([("t1", [NAN, NAN], "B"), ("t2", [7.0, 7.0], "A")]),
    }
    cleaned, imputer, report = clean(splits, SCHEMA, config(drop_rows=True), seed=0)
    assert cleaned["train"]["sid"].tolist() == ["s2", "s2", "s3", "s3"]
    assert cleaned["train"]["x"].tolist() == [2.0, 4.0, 6.0, 8.0]
    assert report["train_series_dropped_incomplete"] == 1
    assert report["train_rows_dropped_incomplete"] == 3
    assert imputer.statistics_ == {"x": 5.0}
    assert cleaned["val"]["sid"].tolist() == ["v1", "v1", "v2", "v2"]  # val and test keep their series, filled
    assert cleaned["val"]["x"].tolist() == [5.0, 3.0, 1.0, 1.0]
    assert cleaned["test"]["x"].tolist() == [5.0, 5.0, 7.0, 7.0]


def test_clean_without_drop_rows_reports_no_series_dropped(config: MakeCleanConfig) -> None:
    _, _, report = clean(_gappy(), SCHEMA, config(numeric="ffill"), seed=0)
    assert report["train_series_dropped_incomplete"] == 0
    assert report["train_rows_dropped_incomplete"] == 0


def _unbalanced() -> dict[str, pd.DataFrame]:
    """Train: four A series of 2 steps (8 rows), two B series of 5 steps (10 rows); val and test small."""
    train = _series(
        [(f"a{k}", [float(k), float(k) + 0.5], "A") for k in range(4)]
        + [(f"b{k}", [10.0 * (k + 1) + step for step in range(5)], "B") for k in range(2)]
    )
    return {
        "train": train,
        "val": _series([("v1", [1.0, 2.0], "A"), ("v2", [3.0, 4.0], "B")]),
        "test": _series([("t1", [1.0, 2.0], "B"), ("t2", [3.0, 4.0], "A")]),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_upsample_draws_whole_series_as_copies_with_new_ids(config: MakeCleanConfig, seed: int) -> None:
    splits = _unbalanced()
    cleaned, _, report = clean(splits, SCHEMA, config(imbalance="upsample"), seed=seed)
    train = cleaned["train"]
    original = splits["train"]
    pd.testing.assert_frame_equal(train.iloc[: len(original)], original, check_dtype=False)  # originals first
    copies = train.iloc[len(original) :]
    assert copies["sid"].nunique() == 2  # B has 2 series, A 4: two B series are drawn
    for name, rows in copies.groupby("sid", sort=False):
        assert name in {"b0~1", "b0~2", "b1~1", "b1~2"}
        source = original[original["sid"] == name.split("~")[0]]
        assert rows["x"].tolist() == source["x"].tolist()  # the whole series, every step
        assert rows["t"].tolist() == source["t"].tolist()
        assert rows["y"].eq("B").all()
    assert (train["sid"] != train["sid"].shift()).sum() == 8  # every series is one contiguous run
    assert report["train_class_counts_before"] == {"A": 4, "B": 2}
    assert report["train_class_counts_after"] == {"A": 4, "B": 4}
    assert report["class_counts_unit"] == "series"
    pd.testing.assert_frame_equal(cleaned["val"], splits["val"], check_dtype=False)
    pd.testing.assert_frame_equal(cleaned["test"], splits["test"], check_dtype=False)


def test_clean_upsample_numbers_repeated_copies_of_one_series(config: MakeCleanConfig) -> None:
    splits = _unbalanced()
    splits["train"] = splits["train"][splits["train"]["sid"] != "b1"].reset_index(drop=True)  # A 4, B 1 (b0)
    cleaned, _, report = clean(splits, SCHEMA, config(imbalance="upsample"), seed=0)
    assert cleaned["train"]["sid"].unique().tolist()[-4:] == ["b0", "b0~1", "b0~2", "b0~3"]
    assert report["train_class_counts_after"] == {"A": 4, "B": 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_downsample_keeps_whole_series(config: MakeCleanConfig, seed: int) -> None:
    splits = _unbalanced()
    cleaned, _, report = clean(splits, SCHEMA, config(imbalance="downsample"), seed=seed)
    train = cleaned["train"]
    original = splits["train"]
    kept = train["sid"].unique().tolist()
    assert len([k for k in kept if k.startswith("a")]) == 2
    assert {"b0", "b1"} <= set(kept)
    assert not any("~" in k for k in kept)
    expected = original[original["sid"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(train, expected, check_dtype=False)  # every step of every kept series
    assert report["train_class_counts_after"] == {"A": 2, "B": 2}


def test_clean_class_weight_weighs_classes_by_series_count(config: MakeCleanConfig) -> None:
    splits = _unbalanced()
    cleaned, _, report = clean(splits, SCHEMA, config(imbalance="class_weight"), seed=0)
    # 6 series, 2 classes: A 6 / (2 * 4) = 0.75, B 6 / (2 * 2) = 1.5 (by rows, 8 A and 10 B, it would be
    # 1.125 and 0.9)
    assert report["class_weight"] == pytest.approx({"A": 0.75, "B": 1.5})
    pd.testing.assert_frame_equal(cleaned["train"], splits["train"], check_dtype=False)


@pytest.mark.parametrize("method", ["ffill", "interpolate"])
def test_imputer_along_time_without_a_series_column_is_refused(method: str) -> None:
    frame = pd.DataFrame({"x": [1.0, NAN, 3.0]})
    with pytest.raises(PipelineError, match=rf"clean\.numeric = '{method}': expected sequence data") as info:
        Imputer(numeric=method).fit(frame, ["x"], [])
    assert "\n" not in str(info.value)
