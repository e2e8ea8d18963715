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
    [("mode", "most_frequent", "clean.numeric"), ("median", "constant", "clean.categorical")],
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
    state = {"numeric": "mean", "categorical": "most_frequent", "columns_": ["bill"], "statistics_": {"bill": math.nan}}
    with pytest.raises(PipelineError, match="'bill'"):
        Imputer.from_dict(json.loads(json.dumps(state)))


def test_boolean_categorical_is_filled_with_text_like_serving_sees_it() -> None:
    train = pd.DataFrame({"flag": [True, None, True, False]})
    imputer = Imputer().fit(train, [], ["flag"])
    assert imputer.statistics_ == {"flag": "True"}
    assert imputer.transform(train)["flag"].tolist() == ["True", "True", "True", "False"]
    assert imputer.transform(pd.DataFrame({"flag": ["", "False"]}))["flag"].tolist() == ["True", "False"]
