"""rebalance: seeded up/down-sampling of the train split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.rebalance import class_weights, rebalance, smote


def _frame() -> pd.DataFrame:
    # x: 7 rows (ids 0 2 3 5 7 8 10), y: 4 rows (ids 1 6 9 11), z: 1 row (id 4)
    labels = ["x", "y", "x", "x", "z", "x", "y", "x", "x", "y", "x", "y"]
    return pd.DataFrame({"id": range(12), "bill": [float(10 * i) for i in range(12)], "label": labels})


def test_upsample_equalises_to_the_largest_class_and_keeps_originals_first() -> None:
    frame = _frame()
    out = rebalance(frame, "label", "upsample", seed=0)
    assert out["label"].value_counts().to_dict() == {"x": 7, "y": 7, "z": 7}
    assert list(out.index) == list(range(21))
    pd.testing.assert_frame_equal(out.iloc[:12], frame)
    extra = out.iloc[12:]
    assert sorted(extra["label"]) == ["y"] * 3 + ["z"] * 6
    assert set(extra.loc[extra["label"] == "y", "id"]) <= {1, 6, 9, 11}
    assert set(extra.loc[extra["label"] == "z", "id"]) == {4}
    # each copy is a whole original row
    for _, row in extra.iterrows():
        assert row["bill"] == 10.0 * row["id"]


def test_upsample_is_deterministic_for_a_seed() -> None:
    pd.testing.assert_frame_equal(rebalance(_frame(), "label", "upsample", 7), rebalance(_frame(), "label", "upsample", 7))


def test_upsample_differs_for_another_seed() -> None:
    # y draws 3 rows from 4 (64 possibilities); seeds 0 and 1 draw different ones
    first = rebalance(_frame(), "label", "upsample", 0)["id"].tolist()
    second = rebalance(_frame(), "label", "upsample", 1)["id"].tolist()
    assert first[:12] == second[:12]
    assert first != second


def test_downsample_equalises_to_the_smallest_class_in_original_order() -> None:
    # x: ids 0 3 5 7, y: 1 6, z: 2 4 8
    frame = pd.DataFrame({"id": range(9), "label": ["x", "y", "z", "x", "z", "x", "y", "x", "z"]})
    for seed in (0, 1, 2):
        out = rebalance(frame, "label", "downsample", seed)
        assert out["label"].value_counts().to_dict() == {"x": 2, "y": 2, "z": 2}
        ids = out["id"].tolist()
        assert ids == sorted(ids)
        assert {1, 6} <= set(ids)  # the smallest class is kept whole
        assert out["label"].tolist() == frame.set_index("id").loc[ids, "label"].tolist()
        assert list(out.index) == list(range(6))
    pd.testing.assert_frame_equal(
        rebalance(frame, "label", "downsample", 3), rebalance(frame, "label", "downsample", 3)
    )


def test_none_is_identity_with_fresh_index() -> None:
    frame = _frame()
    frame.index = range(100, 112)
    out = rebalance(frame, "label", "none", 0)
    pd.testing.assert_frame_equal(out, _frame())


def test_balanced_frame_is_unchanged_by_upsample() -> None:
    frame = pd.DataFrame({"id": range(4), "label": ["a", "b", "b", "a"]})
    pd.testing.assert_frame_equal(rebalance(frame, "label", "upsample", 0), frame)


def test_unknown_strategy_names_clean_imbalance() -> None:
    with pytest.raises(PipelineError, match=r"clean\.imbalance.*'smote'"):
        rebalance(_frame(), "label", "smote", 0)


def test_class_weights_make_each_class_count_equally() -> None:
    labels = pd.Series(["a"] * 6 + ["b"] * 3 + ["c"] * 1)
    assert class_weights(labels) == {"a": 10 / 18, "b": 10 / 9, "c": 10 / 3}


def test_class_weight_strategy_keeps_rows_as_they_are() -> None:
    frame = pd.DataFrame({"y": ["a", "a", "b"], "x": [1, 2, 3]}, index=[5, 6, 7])
    out = rebalance(frame, "y", "class_weight", seed=0)
    assert out["x"].tolist() == [1, 2, 3] and out.index.tolist() == [0, 1, 2]


def _imbalanced() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "a": rng.normal(size=30),
        "b": rng.normal(size=30) * 1000,
        "c": pd.Series(rng.choice(["x", "y"], 30), dtype="str"),
        "y": ["A"] * 22 + ["B"] * 8,
    })


def test_smote_balances_with_new_rows_inside_the_minority_range_and_keeps_originals() -> None:
    frame = _imbalanced()
    out = smote(frame, "y", ["a", "b"], ["c"], neighbors=3, seed=0)
    assert out["y"].value_counts().to_dict() == {"A": 22, "B": 22}
    pd.testing.assert_frame_equal(out.iloc[:30], frame)
    minority, synthetic = frame[frame["y"] == "B"], out.iloc[30:]
    assert (synthetic["y"] == "B").all()
    for column in ("a", "b"):  # interpolations between minority rows stay within their range
        assert synthetic[column].between(minority[column].min(), minority[column].max()).all()
    assert set(synthetic["c"]) <= {"x", "y"}
    pd.testing.assert_frame_equal(out, smote(frame, "y", ["a", "b"], ["c"], neighbors=3, seed=0))
    assert not out.equals(smote(frame, "y", ["a", "b"], ["c"], neighbors=3, seed=1))


def test_smote_refuses_a_class_smaller_than_its_neighbours() -> None:
    with pytest.raises(PipelineError, match=r"clean.smote_neighbors = 8: class 'B' has 8 train rows, expected more than 8"):
        smote(_imbalanced(), "y", ["a", "b"], ["c"], neighbors=8, seed=0)


def test_resampling_refuses_smote_and_unknown_strategies_with_the_schemas_values() -> None:
    from pipeline.preprocess.rebalance import resample_positions

    for strategy in ("smote", "oversample"):
        with pytest.raises(PipelineError, match=r"^clean\.imbalance: expected one of \('none', 'downsample', "
                                                rf"'upsample', 'class_weight'\) here \(smote: call smote\(\)\), got "
                                                rf"'{strategy}'$"):
            resample_positions(np.array([0, 1, 1]), strategy, seed=0)
