"""sequence: ordering long-format rows, per-series labels and lengths, filling along time, masked padding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess import sequence as seq

NAN = np.nan


def _shuffled() -> pd.DataFrame:
    """Rows of two series, out of order; ``row`` records where each row started.

    Returns:
        Series ``b`` appears first; rows 2 and 4 of ``b`` tie on time 1.
    """
    return pd.DataFrame(
        {
            "sid": ["b", "a", "b", "a", "b"],
            "t": [2, 1, 1, 0, 1],
            "row": [0, 1, 2, 3, 4],
            "y": ["B", "A", "B", "A", "B"],
        }
    )


def _long(column: list[float], ids: list[str]) -> pd.DataFrame:
    """A long-format frame with one feature ``x``.

    Args:
        column: The values of ``x``, row for row.
        ids: The series id of each row (rows already ordered).

    Returns:
        The frame with columns ``sid`` and ``x``.
    """
    return pd.DataFrame({"sid": ids, "x": column})


# order, series_labels, lengths


def test_order_keeps_series_in_first_appearance_and_sorts_time_stably() -> None:
    ordered = seq.order(_shuffled(), "sid", "t")
    # b first (it appears first), not a (alphabetical); within b, t 1, 1, 2 with the tie in original order
    assert ordered["sid"].tolist() == ["b", "b", "b", "a", "a"]
    assert ordered["t"].tolist() == [1, 1, 2, 0, 1]
    assert ordered["row"].tolist() == [2, 4, 0, 3, 1]
    assert list(ordered.index) == [0, 1, 2, 3, 4]


def test_order_sorts_datetimes() -> None:
    frame = pd.DataFrame(
        {"sid": ["s", "s", "s"], "t": pd.to_datetime(["2024-03-01", "2024-01-01", "2024-02-01"]), "row": [0, 1, 2]}
    )
    assert seq.order(frame, "sid", "t")["row"].tolist() == [1, 2, 0]


def test_order_does_not_modify_its_input() -> None:
    frame = _shuffled()
    seq.order(frame, "sid", "t")
    pd.testing.assert_frame_equal(frame, _shuffled())


def test_series_labels_gives_one_label_per_series_in_first_appearance_order() -> None:
    labels = seq.series_labels(_shuffled(), "sid", "y")
    assert labels.index.tolist() == ["b", "a"]
    assert labels.tolist() == ["B", "A"]


def test_lengths_counts_steps_per_series_in_first_appearance_order() -> None:
    steps = seq.lengths(_shuffled(), "sid")
    assert steps.to_dict() == {"b": 3, "a": 2}
    assert steps.index.tolist() == ["b", "a"]


# fill_along_time


def test_ffill_carries_the_last_observation_forward() -> None:
    frame = _long([1.0, NAN, NAN, 4.0, NAN], ["a"] * 5)
    filled = seq.fill_along_time(frame, "sid", ["x"], "ffill")
    assert filled["x"].tolist() == [1.0, 1.0, 1.0, 4.0, 4.0]


def test_ffill_never_carries_a_value_across_series() -> None:
    # a ends on 7; b starts with a gap: it must take b's own next observation (5), not a's 7
    frame = _long([7.0, 7.0, NAN, 5.0, NAN], ["a", "a", "b", "b", "b"])
    filled = seq.fill_along_time(frame, "sid", ["x"], "ffill")
    assert filled["x"].tolist() == [7.0, 7.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("method", ["ffill", "interpolate"])
def test_leading_gaps_take_the_first_observation_after_them(method: str) -> None:
    frame = _long([NAN, NAN, 3.0, 6.0], ["a"] * 4)
    filled = seq.fill_along_time(frame, "sid", ["x"], method)
    assert filled["x"].tolist() == [3.0, 3.0, 3.0, 6.0]


def test_interpolate_draws_a_straight_line_between_neighbours() -> None:
    frame = _long([0.0, NAN, NAN, 6.0, 10.0, NAN, 20.0], ["a"] * 7)
    filled = seq.fill_along_time(frame, "sid", ["x"], "interpolate")
    assert filled["x"].tolist() == pytest.approx([0.0, 2.0, 4.0, 6.0, 10.0, 15.0, 20.0])


def test_interpolate_never_draws_a_line_across_series() -> None:
    # across the boundary the line from a's 0 to b's 30 would give 10 and 20; within a series there is no right
    # neighbour for a's gap and no left one for b's
    frame = _long([0.0, NAN, NAN, 30.0], ["a", "a", "b", "b"])
    filled = seq.fill_along_time(frame, "sid", ["x"], "interpolate")
    assert filled["x"].iloc[2:].tolist() == [30.0, 30.0]
    assert filled["x"].iloc[1] != pytest.approx(10.0)


@pytest.mark.parametrize("method", ["ffill", "interpolate"])
def test_a_series_without_any_observation_keeps_its_gaps(method: str) -> None:
    frame = _long([1.0, 2.0, NAN, NAN, 3.0, 4.0], ["a", "a", "b", "b", "c", "c"])
    filled = seq.fill_along_time(frame, "sid", ["x"], method)
    assert filled["x"].iloc[:2].tolist() == [1.0, 2.0]
    assert filled["x"].iloc[2:4].isna().all()
    assert filled["x"].iloc[4:].tolist() == [3.0, 4.0]


def test_fill_along_time_fills_each_column_on_its_own_and_leaves_the_input() -> None:
    frame = pd.DataFrame({"sid": ["a"] * 3, "x": [1.0, NAN, 3.0], "z": [NAN, 10.0, NAN], "k": ["p", None, "q"]})
    filled = seq.fill_along_time(frame, "sid", ["x", "z"], "ffill")
    assert filled["x"].tolist() == [1.0, 1.0, 3.0]
    assert filled["z"].tolist() == [10.0, 10.0, 10.0]
    assert filled["k"].isna().tolist() == [False, True, False]  # a column not named is left alone
    assert frame["x"].isna().sum() == 1 and frame["z"].isna().sum() == 2


def test_fill_along_time_refuses_an_unknown_method() -> None:
    with pytest.raises(PipelineError,
                       match=r"^clean\.numeric: expected one of \('ffill', 'interpolate'\) along time, got 'median'$"):
        seq.fill_along_time(_long([1.0, NAN], ["a", "a"]), "sid", ["x"], "median")


# pad


def _encoded() -> pd.DataFrame:
    """Two ordered series: ``s1`` with 3 steps, ``s2`` with 2, and two features."""
    return pd.DataFrame(
        {
            "sid": ["s1", "s1", "s1", "s2", "s2"],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0],
            "z": [-1.0, -2.0, -3.0, -4.0, -5.0],
        }
    )


def test_pad_stacks_series_with_a_mask_channel() -> None:
    ids, x = seq.pad(_encoded(), "sid", ["x", "z"], length=4)
    assert x.shape == (2, 4, 3)
    assert x.dtype == np.float32
    assert ids.tolist() == ["s1", "s2"]
    assert ids.name == "sid"
    np.testing.assert_array_equal(x[0, :3, :2], [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])
    np.testing.assert_array_equal(x[1, :2, :2], [[4.0, -4.0], [5.0, -5.0]])
    np.testing.assert_array_equal(x[0, :, 2], [1.0, 1.0, 1.0, 0.0])  # the mask: real steps 1, padding 0
    np.testing.assert_array_equal(x[1, :, 2], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(x[0, 3], [0.0, 0.0, 0.0])  # padding is zero in every channel
    np.testing.assert_array_equal(x[1, 2:], np.zeros((2, 3)))


def test_pad_keeps_series_in_first_appearance_order() -> None:
    frame = _encoded().iloc[[3, 4, 0, 1, 2]].reset_index(drop=True)  # s2 first, still contiguous
    ids, x = seq.pad(frame, "sid", ["x"], length=3)
    assert ids.tolist() == ["s2", "s1"]
    np.testing.assert_array_equal(x[0, :, 0], [4.0, 5.0, 0.0])
    np.testing.assert_array_equal(x[1, :, 0], [1.0, 2.0, 3.0])


def test_pad_accepts_a_series_exactly_as_long_as_length() -> None:
    _, x = seq.pad(_encoded(), "sid", ["x"], length=3)
    assert x.shape == (2, 3, 2)
    assert x[0, :, 1].tolist() == [1.0, 1.0, 1.0]


def test_pad_lengthens_the_output_to_a_series_longer_than_length_and_cuts_nothing() -> None:
    ids, x = seq.pad(_encoded(), "sid", ["x"], length=2)  # s1 has 3 steps
    assert x.shape == (2, 3, 2)
    np.testing.assert_array_equal(x[0, :, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x[:, :, 1], [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_pad_with_a_fixed_length_refuses_a_longer_series_naming_the_nets_that_take_any_length() -> None:
    with pytest.raises(PipelineError, match=r"^new\.csv: series 's1' has 3 steps; expected at most 2") as info:
        seq.pad(_encoded(), "sid", ["x"], length=2, source="new.csv", fixed=True)
    message = str(info.value)
    assert "model.kind 'fnn' takes a fixed number of steps" in message
    assert "model.kind: rnn or cnn" in message and "\n" not in message
    _, x = seq.pad(_encoded(), "sid", ["x"], length=3, fixed=True)  # exactly as long: accepted
    assert x.shape == (2, 3, 2)


# as_time


def test_as_time_keeps_numbers() -> None:
    for values in (pd.Series([3, 1, 2]), pd.Series([0.5, 1.5, NAN])):
        out = seq.as_time(values, "t", "data")
        pd.testing.assert_series_equal(out, values)


def test_as_time_keeps_zone_free_datetimes() -> None:
    values = pd.Series(pd.to_datetime(["2024-01-02", "2024-01-01"]))
    pd.testing.assert_series_equal(seq.as_time(values, "t", "data"), values)


def test_as_time_parses_iso_date_text() -> None:
    out = seq.as_time(pd.Series(["2024-01-02", "2024-01-01T12:30:00"]), "t", "data")
    assert pd.api.types.is_datetime64_any_dtype(out)
    assert out.dt.tz is None
    assert out.tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-01 12:30:00")]
    assert out.iloc[1] < out.iloc[0]  # parsed values order as times, not as text


def test_as_time_reads_zoned_text_as_utc_without_a_zone() -> None:
    out = seq.as_time(pd.Series(["2024-01-01T01:00:00+01:00", "2024-01-01T00:30:00Z"]), "t", "data")
    assert out.dt.tz is None
    assert out.tolist() == [pd.Timestamp("2024-01-01 00:00:00"), pd.Timestamp("2024-01-01 00:30:00")]


def test_as_time_refuses_text_that_is_no_date_naming_column_and_value() -> None:
    with pytest.raises(PipelineError, match=r"^walks\.csv: column 'when': expected numbers or ISO dates.*'soon'$") as info:
        seq.as_time(pd.Series(["2024-01-01", "soon", "2024-01-03"]), "when", "walks.csv")
    assert "\n" not in str(info.value)


def test_as_time_refuses_booleans() -> None:
    with pytest.raises(PipelineError, match=r"column 't': expected numbers or ISO dates"):
        seq.as_time(pd.Series([True, False]), "t", "data")
