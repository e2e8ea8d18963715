"""clean: the imputer is fitted on train alone; only train is rebalanced."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from pipeline.preprocess.schema import Schema
from pipeline.stages.clean import clean
from tests.factories import MakeCleanConfig

SCHEMA = Schema("species", (("bill", "numeric"), ("island", "categorical")))


@pytest.fixture
def config(make_clean_config: MakeCleanConfig) -> MakeCleanConfig:
    """``make_clean_config`` with this file's settings: upsampling unless a test says otherwise, and SMOTE from one
    neighbour (the classes here are tiny)."""
    return functools.partial(make_clean_config, imbalance="upsample", smote_neighbors=1)


def _splits() -> dict[str, pd.DataFrame]:
    # train: bill median(1, 2, 4, 10) = 3, island a:3 b:1; classes A:3 B:2.
    # val and test hold large bills and island 'c' (5 times): fitted on all rows, the fill values would be
    # median(1, 2, 4, 10, 100, 200, 300, 400) = 52 and 'c'.
    return {
        "train": pd.DataFrame(
            {
                "bill": [1.0, 2.0, np.nan, 4.0, 10.0],
                "island": ["a", "a", None, "b", "a"],
                "species": ["A", "A", "A", "B", "B"],
            }
        ),
        "val": pd.DataFrame({"bill": [np.nan, 100.0], "island": ["c", "c"], "species": ["A", "B"]}),
        "test": pd.DataFrame(
            {"bill": [200.0, np.nan, 300.0, 400.0], "island": [None, "c", "c", "c"], "species": ["A", "A", "B", "B"]}
        ),
    }


def test_imputer_is_fitted_on_train_only(config: MakeCleanConfig) -> None:
    _, imputer, _ = clean(_splits(), SCHEMA, config(), seed=0)
    assert imputer.statistics_ == {"bill": 3.0, "island": "a"}


def test_mean_imputation_uses_train_mean(config: MakeCleanConfig) -> None:
    _, imputer, _ = clean(_splits(), SCHEMA, config(numeric="mean"), seed=0)
    assert imputer.statistics_["bill"] == pytest.approx(17.0 / 4)


def test_val_and_test_are_imputed_but_not_rebalanced(config: MakeCleanConfig) -> None:
    cleaned, _, _ = clean(_splits(), SCHEMA, config(imbalance="upsample"), seed=0)
    pd.testing.assert_frame_equal(
        cleaned["val"], pd.DataFrame({"bill": [3.0, 100.0], "island": ["c", "c"], "species": ["A", "B"]})
    )
    pd.testing.assert_frame_equal(
        cleaned["test"],
        pd.DataFrame(
            {"bill": [200.0, 3.0, 300.0, 400.0], "island": ["a", "c", "c", "c"], "species": ["A", "A", "B", "B"]}
        ),
    )


def test_upsample_rebalances_train_only_and_keeps_its_rows_first(config: MakeCleanConfig) -> None:
    cleaned, _, report = clean(_splits(), SCHEMA, config(imbalance="upsample"), seed=0)
    train = cleaned["train"]
    assert train["species"].value_counts().to_dict() == {"A": 3, "B": 3}
    imputed = pd.DataFrame(
        {"bill": [1.0, 2.0, 3.0, 4.0, 10.0], "island": ["a", "a", "a", "b", "a"], "species": ["A", "A", "A", "B", "B"]}
    )
    pd.testing.assert_frame_equal(train.iloc[:5], imputed)
    assert train.iloc[5]["species"] == "B" and train.iloc[5]["bill"] in (4.0, 10.0)
    assert report["imbalance"] == "upsample"
    assert report["train_class_counts_before"] == {"A": 3, "B": 2}
    assert report["train_class_counts_after"] == {"A": 3, "B": 3}


def test_downsample_rebalances_train_only(config: MakeCleanConfig) -> None:
    cleaned, _, report = clean(_splits(), SCHEMA, config(imbalance="downsample"), seed=0)
    assert cleaned["train"]["species"].value_counts().to_dict() == {"A": 2, "B": 2}
    assert cleaned["val"]["species"].tolist() == ["A", "B"]
    assert cleaned["test"]["species"].tolist() == ["A", "A", "B", "B"]
    assert report["train_class_counts_after"] == {"A": 2, "B": 2}


def test_no_rebalancing_keeps_imputed_train(config: MakeCleanConfig) -> None:
    cleaned, _, report = clean(_splits(), SCHEMA, config(imbalance="none"), seed=0)
    pd.testing.assert_frame_equal(
        cleaned["train"],
        pd.DataFrame(
            {"bill": [1.0, 2.0, 3.0, 4.0, 10.0], "island": ["a", "a", "a", "b", "a"], "species": ["A", "A", "A", "B", "B"]}
        ),
    )
    assert report["train_class_counts_after"] == {"A": 3, "B": 2}


def test_report_counts_filled_values_per_split(config: MakeCleanConfig) -> None:
    _, _, report = clean(_splits(), SCHEMA, config(), seed=0)
    assert report["filled"] == {"train": {"bill": 1, "island": 1}, "val": {"bill": 1}, "test": {"bill": 1, "island": 1}}


def test_clean_does_not_modify_its_inputs(config: MakeCleanConfig) -> None:
    splits = _splits()
    clean(splits, SCHEMA, config(), seed=0)
    for name, frame in _splits().items():
        pd.testing.assert_frame_equal(splits[name], frame)


def test_drop_rows_thins_train_only_and_val_test_keep_every_row(config: MakeCleanConfig) -> None:
    cleaned, imputer, report = clean(_splits(), SCHEMA, config(imbalance="none", drop_rows=True), seed=0)
    # train rows 2 (bill and island missing) is incomplete: 4 remain, and the fill values come from them
    assert report["train_rows_dropped_incomplete"] == 1
    assert cleaned["train"]["bill"].tolist() == [1.0, 2.0, 4.0, 10.0]
    assert imputer.statistics_ == {"bill": 3.0, "island": "a"}
    assert len(cleaned["val"]) == 2 and len(cleaned["test"]) == 4
    assert cleaned["test"]["bill"].tolist() == [200.0, 3.0, 300.0, 400.0]
    assert report["filled"]["train"] == {}


def test_class_weight_keeps_train_rows_and_reports_weights(config: MakeCleanConfig) -> None:
    cleaned, _, report = clean(_splits(), SCHEMA, config(imbalance="class_weight"), seed=0)
    assert cleaned["train"]["species"].tolist() == ["A", "A", "A", "B", "B"]
    assert report["class_weight"] == {"A": pytest.approx(5 / 6), "B": pytest.approx(5 / 4)}
    assert clean(_splits(), SCHEMA, config(), seed=0)[2]["class_weight"] is None


def test_dropped_and_indicator_columns_are_reported(config: MakeCleanConfig) -> None:
    report = clean(_splits(), SCHEMA, config(max_missing=0.1, indicators=True), seed=0)[2]
    assert report["columns_dropped"] == ["bill", "island"]  # each is 20% missing in train
    cleaned, _, report = clean(_splits(), SCHEMA, config(indicators=True), seed=0)
    assert report["indicator_columns"] == ["bill__missing", "island__missing"]
    assert cleaned["val"]["bill__missing"].tolist() == [1.0, 0.0]


def test_dates_become_days_since_1970_as_serving_sees_them(config: MakeCleanConfig) -> None:
    schema = Schema("y", (("when", "date"), ("bill", "numeric")))
    splits = {
        "train": pd.DataFrame({"when": ["1970-01-02", None, "1970-01-11"], "bill": [1.0, 2.0, 3.0], "y": ["A", "B", "A"]}),
        "val": pd.DataFrame({"when": ["1970-01-03"], "bill": [1.0], "y": ["A"]}),
        "test": pd.DataFrame({"when": [None], "bill": [1.0], "y": ["B"]}),
    }
    cleaned, imputer, _ = clean(splits, schema, config(imbalance="none"), seed=0)
    assert imputer.statistics_["when"] == 5.5  # median of days 1 and 10
    assert cleaned["train"]["when"].tolist() == [1.0, 5.5, 10.0]
    assert cleaned["val"]["when"].tolist() == [2.0] and cleaned["test"]["when"].tolist() == [5.5]
    assert cleaned["train"]["y"].tolist() == ["A", "B", "A"]


def test_smote_adds_rows_to_train_only(config: MakeCleanConfig) -> None:
    cleaned, _, report = clean(_splits(), SCHEMA, config(imbalance="smote"), seed=0)
    assert report["train_class_counts_after"] == {"A": 3, "B": 3}
    assert cleaned["train"]["bill"].iloc[:5].tolist() == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert 4.0 <= cleaned["train"]["bill"].iloc[5] <= 10.0  # between the two B rows
    assert len(cleaned["val"]) == 2 and len(cleaned["test"]) == 4
