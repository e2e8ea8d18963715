"""Imputer: fill values learned from the train split only, applied unchanged elsewhere."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.impute import Imputer


def _train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bill": [1.0, 2.0, 4.0, np.nan, 2.0],
            "island": ["a", "a", "b", None, "c"],
            "species": ["A", "B", "A", "B", "A"],
        }
    )


def _test() -> pd.DataFrame:
    return pd.DataFrame({"bill": [10.0, 20.0, np.nan], "island": ["b", "b", None], "species": ["A", "B", "B"]})


def test_median_and_most_frequent_come_from_train_only() -> None:
    imputer = Imputer("median", "most_frequent").fit(_train(), ["bill"], ["island"])
    # train: median(1, 2, 2, 4) = 2.0, island a:2 b:1 c:1
    assert imputer.statistics_ == {"bill": 2.0, "island": "a"}
    # train + test would give median(1, 2, 2, 4, 10, 20) = 3.0 and island b:3 -> different values
    leaky = Imputer("median", "most_frequent").fit(pd.concat([_train(), _test()]), ["bill"], ["island"])
    assert leaky.statistics_ == {"bill": 3.0, "island": "b"}


def test_mean_comes_from_train_only() -> None:
    imputer = Imputer("mean").fit(_train(), ["bill"], [])
    assert imputer.statistics_["bill"] == pytest.approx(9.0 / 4)  # (1 + 2 + 4 + 2) / 4
    leaky = Imputer("mean").fit(pd.concat([_train(), _test()]), ["bill"], [])
    assert leaky.statistics_["bill"] == pytest.approx(39.0 / 6)


def test_transform_fills_other_splits_with_train_statistics_and_leaves_input_alone() -> None:
    imputer = Imputer().fit(_train(), ["bill"], ["island"])
    test = _test()
    out = imputer.transform(test)
    assert out["bill"].tolist() == [10.0, 20.0, 2.0]
    assert out["island"].tolist() == ["b", "b", "a"]
    assert out["species"].tolist() == ["A", "B", "B"]
    assert test["bill"].isna().sum() == 1 and test["island"].isna().sum() == 1  # not modified in place


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["b", "a", "b", "a", None, "c"], "a"), (["z", "y", "z", "y"], "y"), (["c", "b", "c", "b", "a", "a"], "a")],
)
def test_most_frequent_tie_goes_to_smallest_value(values: list, expected: str) -> None:
    assert Imputer().fit(pd.DataFrame({"c": values}), [], ["c"]).statistics_ == {"c": expected}


def test_transform_refuses_unfitted() -> None:
    with pytest.raises(PipelineError, match="not fitted"):
        Imputer().transform(_test())


def test_transform_refuses_missing_column() -> None:
    imputer = Imputer().fit(_train(), ["bill"], ["island"])
    with pytest.raises(PipelineError, match=r"missing \['island'\]"):
        imputer.transform(_test().drop(columns=["island"]))


@pytest.mark.parametrize(
    ("numeric", "categorical", "key"),
    [("mode", "most_frequent", "clean.numeric"), ("median", "median", "clean.categorical")],
)
def test_unknown_strategy_names_its_key(numeric: str, categorical: str, key: str) -> None:
    with pytest.raises(PipelineError, match=key):
        Imputer(numeric, categorical).fit(_train(), ["bill"], ["island"])


def test_column_without_any_train_value_is_refused() -> None:
    frame = pd.DataFrame({"bill": [np.nan, np.nan], "island": ["a", "b"]})
    with pytest.raises(PipelineError, match="'bill'"):
        Imputer().fit(frame, ["bill"], ["island"])


def test_json_round_trip_gives_identical_transform() -> None:
    imputer = Imputer("mean").fit(_train(), ["bill"], ["island"])
    restored = Imputer.from_dict(json.loads(json.dumps(imputer.to_dict())))
    assert restored.statistics_ == imputer.statistics_
    pd.testing.assert_frame_equal(restored.transform(_test()), imputer.transform(_test()))


def test_from_dict_refuses_non_finite_fill_value() -> None:
    state = Imputer("mean").fit(pd.DataFrame({"bill": [1.0, None, 3.0]}), ["bill"], []).to_dict()
    state["statistics_"]["bill"] = math.nan  # a corrupt or hand-edited state file
    with pytest.raises(PipelineError, match="'bill'"):
        Imputer.from_dict(json.loads(json.dumps(state)))


def test_boolean_categorical_is_filled_with_text_like_serving_sees_it() -> None:
    train = pd.DataFrame({"flag": [True, None, True, False]})
    imputer = Imputer().fit(train, [], ["flag"])
    assert imputer.statistics_ == {"flag": "True"}
    assert imputer.transform(train)["flag"].tolist() == ["True", "True", "True", "False"]
    assert imputer.transform(pd.DataFrame({"flag": ["", "False"]}))["flag"].tolist() == ["True", "False"]


def test_knn_matches_scikit_learn_on_the_same_standardisation() -> None:
    from sklearn.impute import KNNImputer  # an independent implementation as the oracle

    rng = np.random.default_rng(0)
    values = rng.normal(size=(120, 4)) * [1, 10, 100, 1000]
    values[rng.random(values.shape) < 0.15] = np.nan
    frame = pd.DataFrame(values, columns=list("abcd"))
    ours = Imputer("knn", knn_neighbors=3).fit(frame, list("abcd"), []).transform(frame)[list("abcd")].to_numpy()
    center, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    expected = KNNImputer(n_neighbors=3).fit_transform((values - center) / spread) * spread + center
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


def test_knn_state_round_trips_through_json_and_caps_references() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 2))
    values[::7, 0] = np.nan
    frame = pd.DataFrame(values, columns=["a", "b"])
    imputer = Imputer("knn", knn_neighbors=2, knn_reference_rows=20, seed=3).fit(frame, ["a", "b"], [])
    assert len(imputer.knn_reference_) == 20
    restored = Imputer.from_dict(json.loads(json.dumps(imputer.to_dict(), allow_nan=False)))  # as write_json
    pd.testing.assert_frame_equal(restored.transform(frame), imputer.transform(frame))


def test_max_missing_drops_columns_by_train_share_only() -> None:
    train = pd.DataFrame({"a": [1.0, None, None, 4.0], "b": [1.0, 2.0, None, 4.0], "c": ["x", None, "y", "y"]})
    imputer = Imputer(max_missing=0.3).fit(train, ["a", "b"], ["c"])
    assert imputer.dropped_ == ["a"]  # a is 50% missing; b and c are 25%
    assert imputer.numeric_out_ == ["b"] and imputer.categorical_out_ == ["c"]
    out = imputer.transform(pd.DataFrame({"b": [None], "c": ["x"]}))  # a need not even be present
    assert list(out.columns) == ["b", "c"] and out["b"].tolist() == [2.0]


def test_indicators_flag_gaps_before_filling() -> None:
    train = pd.DataFrame({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "c": ["x", "y", None]})
    imputer = Imputer(indicators=True).fit(train, ["a", "b"], ["c"])
    assert imputer.numeric_out_ == ["a", "b", "a__missing", "c__missing"]  # b had no gap: no flag
    out = imputer.transform(train)
    assert out["a__missing"].tolist() == [0.0, 1.0, 0.0] and out["c__missing"].tolist() == [0.0, 0.0, 1.0]
    assert out["a"].tolist() == [1.0, 2.0, 3.0] and out["c"].tolist() == ["x", "y", "x"]


def test_constant_and_most_frequent_numeric_fills() -> None:
    train = pd.DataFrame({"a": [1.0, 5.0, 5.0, None], "c": ["x", None, "y", "y"]})
    constant = Imputer("constant", "constant", fill_value=-1.0, fill_category="unknown").fit(train, ["a"], ["c"])
    assert constant.transform(train)["a"].tolist() == [1.0, 5.0, 5.0, -1.0]
    assert constant.transform(train)["c"].tolist() == ["x", "unknown", "y", "y"]
    assert Imputer("most_frequent").fit(train, ["a"], ["c"]).statistics_["a"] == 5.0


def test_drop_rows_learns_from_complete_rows_only() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0, 100.0, None], "c": ["x", "x", None, "y"]})
    imputer = Imputer("mean", drop_rows=True).fit(train, ["a"], ["c"])
    assert imputer.complete(train).tolist() == [True, True, False, False]
    assert imputer.statistics_ == {"a": 1.5, "c": "x"}  # 100.0 sits in an incomplete row
    with pytest.raises(PipelineError, match="clean.drop_rows = true: expected some complete train rows"):
        Imputer(drop_rows=True).fit(pd.DataFrame({"a": [None, 1.0], "c": ["x", None]}), ["a"], ["c"])
