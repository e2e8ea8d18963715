"""FeatureEncoder and LabelEncoder: statistics and categories learned from the train split only."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler, target_encoder_from_dict

NUMERIC = ["bill", "const"]
CATEGORICAL = ["island"]


def _train() -> pd.DataFrame:
    return pd.DataFrame(
        {"bill": [1.0, 2.0, 3.0, 6.0], "const": [5.0, 5.0, 5.0, 5.0], "island": ["b", "a", "b", "c"]}
    )


def _test() -> pd.DataFrame:
    return pd.DataFrame({"bill": [100.0, 2.0], "const": [7.0, 5.0], "island": ["a", "Zz"]})


def test_standard_statistics_come_from_train_only() -> None:
    encoder = FeatureEncoder("standard").fit(_train(), NUMERIC, CATEGORICAL)
    # bill: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5; const: spread 0 -> 1
    assert encoder.offset_ == [3.0, 5.0]
    assert encoder.spread_ == pytest.approx([math.sqrt(3.5), 1.0])
    # the whole data (train + test) has bill mean 19: train-only statistics differ
    leaky = FeatureEncoder("standard").fit(pd.concat([_train(), _test()]), NUMERIC, CATEGORICAL)
    assert leaky.offset_[0] == pytest.approx(19.0)


def test_minmax_statistics_come_from_train_only() -> None:
    encoder = FeatureEncoder("minmax").fit(_train(), NUMERIC, CATEGORICAL)
    assert encoder.offset_ == [1.0, 5.0]
    assert encoder.spread_ == [5.0, 1.0]
    np.testing.assert_allclose(encoder.transform(_train())[:, 0], [0.0, 0.2, 0.4, 1.0], rtol=1e-6)


def test_none_method_passes_numbers_through() -> None:
    encoder = FeatureEncoder("none").fit(_train(), NUMERIC, CATEGORICAL)
    assert (encoder.offset_, encoder.spread_) == ([0.0, 0.0], [1.0, 1.0])
    np.testing.assert_array_equal(encoder.transform(_test())[:, :2], [[100.0, 7.0], [2.0, 5.0]])


def test_transform_scales_numerics_and_one_hot_encodes_with_unseen_as_zeros() -> None:
    encoder = FeatureEncoder("standard").fit(_train(), NUMERIC, CATEGORICAL)
    assert encoder.categories_ == {"island": ["a", "b", "c"]}
    assert encoder.feature_names_out_ == ["bill", "const", "island=a", "island=b", "island=c"]
    out = encoder.transform(_test())
    assert out.dtype == np.float32
    s = math.sqrt(3.5)
    expected = [[97.0 / s, 2.0, 1.0, 0.0, 0.0], [-1.0 / s, 0.0, 0.0, 0.0, 0.0]]  # 'Zz' is unseen: all zeros
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_constant_column_is_centred_not_divided_by_zero() -> None:
    encoder = FeatureEncoder("standard").fit(_train(), NUMERIC, CATEGORICAL)
    const = encoder.transform(_train())[:, 1]
    assert np.isfinite(const).all()
    np.testing.assert_array_equal(const, [0.0, 0.0, 0.0, 0.0])
    minmax = FeatureEncoder("minmax").fit(_train(), NUMERIC, CATEGORICAL).transform(_test())
    assert np.isfinite(minmax).all()
    np.testing.assert_array_equal(minmax[:, 1], [2.0, 0.0])


def test_missing_categorical_value_encodes_as_zeros() -> None:
    encoder = FeatureEncoder().fit(_train(), NUMERIC, CATEGORICAL)
    frame = pd.DataFrame({"bill": [3.0], "const": [5.0], "island": [None]})
    np.testing.assert_array_equal(encoder.transform(frame), [[0.0, 0.0, 0.0, 0.0, 0.0]])


def test_transform_refuses_unfitted() -> None:
    with pytest.raises(PipelineError, match="not fitted"):
        FeatureEncoder().transform(_test())


def test_transform_refuses_missing_column() -> None:
    encoder = FeatureEncoder().fit(_train(), NUMERIC, CATEGORICAL)
    with pytest.raises(PipelineError, match=r"missing \['const'\]"):
        encoder.transform(_test().drop(columns=["const"]))


def test_missing_numeric_value_is_refused_in_fit_and_transform() -> None:
    with_nan = pd.DataFrame({"bill": [1.0, np.nan], "const": [5.0, 5.0], "island": ["a", "b"]})
    with pytest.raises(PipelineError, match=r"\['bill'\]"):
        FeatureEncoder().fit(with_nan, NUMERIC, CATEGORICAL)
    encoder = FeatureEncoder().fit(_train(), NUMERIC, CATEGORICAL)
    with pytest.raises(PipelineError, match=r"\['bill'\]"):
        encoder.transform(with_nan)


def test_unknown_method_names_scale_method() -> None:
    with pytest.raises(PipelineError, match=r"scale\.method.*'zscore'"):
        FeatureEncoder("zscore").fit(_train(), NUMERIC, CATEGORICAL)


@pytest.mark.parametrize("method", ["standard", "minmax", "none"])
def test_json_round_trip_gives_identical_transform(method: str) -> None:
    encoder = FeatureEncoder(method).fit(_train(), NUMERIC, CATEGORICAL)
    restored = FeatureEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert restored.feature_names_out_ == encoder.feature_names_out_
    np.testing.assert_array_equal(restored.transform(_test()), encoder.transform(_test()))


def test_boolean_categorical_column_is_one_hot_encoded() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "flag": [True, False, True]})
    encoder = FeatureEncoder("none").fit(train, ["x"], ["flag"])
    assert encoder.feature_names_out_ == ["x", "flag=False", "flag=True"]
    np.testing.assert_array_equal(encoder.transform(train)[:, 1:], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


def test_label_encoder_uses_sorted_classes() -> None:
    labels = LabelEncoder().fit(pd.Series(["Gentoo", "Adelie", "Chinstrap", "Adelie", None], name="species"))
    assert labels.classes_ == ["Adelie", "Chinstrap", "Gentoo"]
    out = labels.transform(pd.Series(["Gentoo", "Adelie", "Chinstrap"], name="species"))
    assert out.dtype == np.int64
    assert out.tolist() == [2, 0, 1]


def test_label_encoder_names_an_unseen_label() -> None:
    labels = LabelEncoder().fit(pd.Series(["Adelie", "Gentoo"], name="species"))
    with pytest.raises(PipelineError, match=r"'species'.*'Emperor'"):
        labels.transform(pd.Series(["Adelie", "Emperor"], name="species"))


def test_label_encoder_refuses_a_single_class() -> None:
    with pytest.raises(PipelineError, match=r"'species'.*at least 2 classes"):
        LabelEncoder().fit(pd.Series(["Adelie", "Adelie", None], name="species"))


def test_label_encoder_refuses_unfitted() -> None:
    with pytest.raises(PipelineError, match="not fitted"):
        LabelEncoder().transform(pd.Series(["Adelie"]))


def test_label_encoder_round_trips_through_json() -> None:
    labels = LabelEncoder().fit(pd.Series(["b", "c", "a"]))
    restored = LabelEncoder.from_dict(json.loads(json.dumps(labels.to_dict())))
    assert restored.transform(pd.Series(["c", "a", "b"])).tolist() == [2, 0, 1]


def test_robust_scaling_uses_train_median_and_interquartile_range() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 100.0]})
    encoder = FeatureEncoder("robust").fit(train, ["x"], [])
    assert encoder.offset_ == [3.0] and encoder.spread_ == [2.0]  # median 3, q75 4 - q25 2
    np.testing.assert_array_equal(encoder.transform(pd.DataFrame({"x": [3.0, 5.0]}))[:, 0], [0.0, 1.0])


def test_ordinal_encoding_gives_sorted_indices_and_minus_one_for_unseen() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["pear", "apple", "fig"]})
    encoder = FeatureEncoder("none", "ordinal").fit(train, ["x"], ["c"])
    assert encoder.feature_names_out_ == ["x", "c"]
    out = encoder.transform(pd.DataFrame({"x": [0.0, 0.0, 0.0], "c": ["apple", "pear", "kiwi"]}))
    np.testing.assert_array_equal(out[:, 1], [0.0, 2.0, -1.0])
    restored = FeatureEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(restored.transform(train), encoder.transform(train))


def test_target_scaler_standardises_with_train_statistics_and_inverts() -> None:
    scaler = TargetScaler().fit(pd.Series([10.0, 20.0, 30.0], name="y"))
    assert scaler.center_ == 20.0 and scaler.scale_ == pytest.approx((200 / 3) ** 0.5)
    z = scaler.transform(pd.Series([20.0, 30.0]))
    assert z.dtype == np.float32 and z[0] == 0.0
    np.testing.assert_allclose(scaler.inverse(z), [20.0, 30.0], rtol=1e-6)
    restored = target_encoder_from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert isinstance(restored, TargetScaler) and restored.center_ == 20.0
    with pytest.raises(PipelineError, match="target 'y': expected numbers for a regression task, got 'big'"):
        TargetScaler().fit(pd.Series([1.0, "big"], name="y", dtype=object))
