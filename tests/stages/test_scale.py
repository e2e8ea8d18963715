"""scale: encoders fitted on train, applied unchanged to every split."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ScaleConfig
from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema
from pipeline.stages.scale import scale

SCHEMA = Schema("species", (("bill", "numeric"), ("island", "categorical")))


def _splits() -> dict[str, pd.DataFrame]:
    # train bill: mean 4, population std sqrt(5), min 1, range 6; the other splits would move all of these
    return {
        "train": pd.DataFrame(
            {"bill": [1.0, 3.0, 5.0, 7.0], "island": ["b", "a", "b", "a"], "species": ["Gentoo", "Adelie", "Chinstrap", "Adelie"]}
        ),
        "val": pd.DataFrame({"bill": [4.0, 9.0], "island": ["a", "c"], "species": ["Adelie", "Gentoo"]}),
        "test": pd.DataFrame({"bill": [104.0, 0.0], "island": ["b", "b"], "species": ["Chinstrap", "Gentoo"]}),
    }


def test_output_columns_are_features_then_target() -> None:
    out, features, _ = scale(_splits(), SCHEMA.numeric, SCHEMA.categorical, SCHEMA.target, ScaleConfig(method="standard", encoding="onehot"))
    assert features.feature_names_out_ == ["bill", "island=a", "island=b"]
    for frame in out.values():
        assert list(frame.columns) == ["bill", "island=a", "island=b", "species"]
        assert frame["bill"].dtype == np.float32
        assert frame["species"].dtype == np.int64


def test_target_is_encoded_in_sorted_class_order() -> None:
    out, _, labels = scale(_splits(), SCHEMA.numeric, SCHEMA.categorical, SCHEMA.target, ScaleConfig(method="standard", encoding="onehot"))
    assert labels.classes_ == ["Adelie", "Chinstrap", "Gentoo"]
    assert out["train"]["species"].tolist() == [2, 0, 1, 0]
    assert out["val"]["species"].tolist() == [0, 2]
    assert out["test"]["species"].tolist() == [1, 2]


def test_standard_statistics_come_from_train_only() -> None:
    out, features, _ = scale(_splits(), SCHEMA.numeric, SCHEMA.categorical, SCHEMA.target, ScaleConfig(method="standard", encoding="onehot"))
    assert features.offset_ == [4.0]
    assert features.spread_ == [pytest.approx(math.sqrt(5.0))]
    np.testing.assert_allclose(out["val"]["bill"], [0.0, math.sqrt(5.0)], rtol=1e-6)
    np.testing.assert_allclose(out["test"]["bill"], [100.0 / math.sqrt(5.0), -4.0 / math.sqrt(5.0)], rtol=1e-6)
    # island 'c' only appears in val: no column for it, the row encodes as zeros
    np.testing.assert_array_equal(out["val"][["island=a", "island=b"]].to_numpy(), [[1.0, 0.0], [0.0, 0.0]])


def test_minmax_statistics_come_from_train_only() -> None:
    out, features, _ = scale(_splits(), SCHEMA.numeric, SCHEMA.categorical, SCHEMA.target, ScaleConfig(method="minmax", encoding="onehot"))
    assert (features.offset_, features.spread_) == ([1.0], [6.0])
    np.testing.assert_allclose(out["train"]["bill"], [0.0, 1.0 / 3, 2.0 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out["val"]["bill"], [0.5, 4.0 / 3], rtol=1e-6)


def test_unseen_label_in_test_is_refused() -> None:
    splits = _splits()
    splits["test"] = pd.DataFrame({"bill": [2.0], "island": ["a"], "species": ["Emperor"]})
    with pytest.raises(PipelineError, match=r"'species'.*'Emperor'"):
        scale(splits, SCHEMA.numeric, SCHEMA.categorical, SCHEMA.target, ScaleConfig(method="standard", encoding="onehot"))
