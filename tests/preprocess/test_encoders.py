"""Encoders: scale's encoder.json round-trips, and content of another shape is refused with the key it lacks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler
from pipeline.preprocess.encoders import Encoders
from pipeline.preprocess.image import ImageScaler


def _table() -> Encoders:
    train = pd.DataFrame({"bill": [1.0, 2.0, 6.0], "island": ["b", "a", "b"]})
    return Encoders(FeatureEncoder("standard").fit(train, ["bill"], ["island"]),
                    LabelEncoder().fit(pd.Series(["x", "y", "x"])), None)


def _images() -> Encoders:
    images = np.arange(2 * 1 * 3 * 3, dtype="float32").reshape(2, 1, 3, 3)
    return Encoders(ImageScaler("minmax").fit(images), TargetScaler().fit(pd.Series([1.0, 3.0])), None)


def _sequences() -> Encoders:
    table = _table()
    return Encoders(table.features, table.target, {"series": "id", "length": 7})


@pytest.mark.parametrize(("make", "modality"), [(_table, "tabular"), (_images, "image"), (_sequences, "sequence")])
def test_round_trip_through_json_keeps_every_fitted_value(make: object, modality: str) -> None:
    encoders = make()
    back = Encoders.from_dict(json.loads(json.dumps(encoders.to_dict())))
    assert back.modality == modality
    assert back.to_dict() == encoders.to_dict()
    assert type(back.features) is type(encoders.features) and type(back.target) is type(encoders.target)


@pytest.mark.parametrize(("edit", "error", "match"), [
    (lambda s: s.pop("target"), KeyError, "target"),
    (lambda s: s.update(features=[1, 2]), TypeError, "features: expected an object, got list"),
    (lambda s: s["features"].pop("offset_"), KeyError, "offset_"),
    (lambda s: s.update(sequence={"series": "id"}), KeyError, "length"),
    (lambda s: s.update(sequence={"series": "id", "length": "long"}), ValueError, "long"),
], ids=["no target", "features a list", "no offsets", "sequence without length", "length not a number"])
def test_content_of_another_shape_raises_naming_the_key(edit: object, error: type, match: str) -> None:
    state = _table().to_dict()
    edit(state)
    with pytest.raises(error, match=match):
        Encoders.from_dict(state)


def test_passthrough_leaves_scaled_input_as_it_is() -> None:
    table = Encoders.passthrough(["a", "b"], [0, 1, 2])
    frame = pd.DataFrame({"a": [-3.5, 2.0], "b": [0.25, 7.0]})
    assert table.modality == "tabular" and table.target.classes_ == [0, 1, 2]
    np.testing.assert_array_equal(table.features.transform(frame), frame.to_numpy())
    images = Encoders.passthrough((1, 2, 2))
    pixels = np.array([[[[1.0, -2.0], [3.0, 0.5]]]], dtype="float32")
    assert images.modality == "image" and isinstance(images.target, TargetScaler)
    np.testing.assert_array_equal(images.features.transform(pixels), pixels)
    assert Encoders.from_dict(json.loads(json.dumps(images.to_dict()))).to_dict() == images.to_dict()
