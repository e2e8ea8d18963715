"""scale: encoders fitted on train, applied unchanged to every split, by the functions the stage's main calls."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ScaleConfig
from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema
from pipeline.preprocess.encoders import Encoders
from pipeline.stages.scale import encode, encode_chunks, fit_encoders

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


def scale(
    splits: dict[str, pd.DataFrame], numeric: list[str], categorical: list[str], target: str, config: ScaleConfig,
    schema: Schema = SCHEMA,
) -> tuple[dict[str, pd.DataFrame], Any, Any]:
    """What main does with each split: fit on train, encode every split (in one chunk)."""
    encoders = fit_encoders(splits["train"], numeric, categorical, config, schema)
    return {name: encode(frame, encoders, target) for name, frame in splits.items()}, encoders.features, encoders.target


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


def test_encoding_in_chunks_gives_the_whole_split_encoded_at_once() -> None:
    splits = _splits()
    encoders = fit_encoders(splits["train"], SCHEMA.numeric, SCHEMA.categorical,
                            ScaleConfig(method="standard", encoding="onehot"), SCHEMA)
    whole = encode(splits["train"], encoders, "species")
    parts = list(encode_chunks(splits["train"], encoders, "species", rows=3))
    assert [len(part) for part in parts] == [3, 1]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    (empty,) = encode_chunks(splits["train"].iloc[:0], encoders, "species")  # still one slice: the file's columns
    assert list(empty.columns) == list(whole.columns) and empty.empty


def test_sequences_keep_their_series_id_first_and_the_target_is_learnt_per_series() -> None:
    schema = Schema("level", (("x", "numeric"),), task="regression", modality="sequence", sequence_id="series",
                    sequence_time="step")
    # series a: 3 steps at level 1, b: 1 step at level 5; per series the mean is 3 and the std 2 (per row: 2, sqrt 3)
    train = pd.DataFrame({"series": ["a", "a", "a", "b"], "step": [0, 1, 2, 0], "x": [1.0, 2.0, 3.0, 6.0],
                          "level": [1.0, 1.0, 1.0, 5.0]})
    encoders = fit_encoders(train, ["x"], [], ScaleConfig(method="minmax", encoding="onehot"), schema)
    assert isinstance(encoders, Encoders) and encoders.modality == "sequence"
    assert encoders.sequence == {"series": "series", "length": 3}
    assert (encoders.target.center_, encoders.target.scale_) == (3.0, 2.0)
    out = encode(train, encoders, "level")
    assert list(out.columns) == ["series", "x", "level"]
    assert out["series"].tolist() == ["a", "a", "a", "b"]
    np.testing.assert_allclose(out["x"], [0.0, 0.2, 0.4, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out["level"], [-1.0, -1.0, -1.0, 1.0], rtol=1e-6)
