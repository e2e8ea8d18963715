"""ImageScaler: one offset and spread per channel, learned from the train images only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.image import ImageScaler


def _train() -> np.ndarray:
    """Three 2-channel 2x2 images (N, C, H, W): channel 0 holds 0..11, channel 1 holds 1000 + 100 * (0..11).

    The two channels differ in scale by a factor of 100 and in offset by 1000, so one shared offset or spread
    would leave them far apart; per channel, every method maps both to the same values.
    """
    base = np.arange(12, dtype="float32").reshape(3, 1, 2, 2)
    return np.concatenate([base, 1000.0 + 100.0 * base], axis=1)


def _val() -> np.ndarray:
    """Two images far outside the train range: fitting on them would move every statistic."""
    return np.stack([np.full((2, 2, 2), -500.0), np.full((2, 2, 2), 1e6)]).astype("float32")


def _channels(images: np.ndarray) -> np.ndarray:
    """(C, N*H*W): every pixel of each channel in one row."""
    return np.moveaxis(images, 1, 0).reshape(images.shape[1], -1)


def test_standard_gives_every_channel_mean_0_and_std_1_on_train() -> None:
    scaler = ImageScaler("standard").fit(_train())
    # channel 0: mean 5.5, population std sqrt((12**2 - 1) / 12); channel 1 is 1000 + 100 * channel 0
    std = np.sqrt((12**2 - 1) / 12)
    assert scaler.offset_ == pytest.approx([5.5, 1550.0])
    assert scaler.spread_ == pytest.approx([std, 100 * std])
    out = scaler.transform(_train())
    assert out.dtype == np.float32 and out.shape == (3, 2, 2, 2)
    assert _channels(out).mean(axis=1) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert _channels(out).std(axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    np.testing.assert_allclose(out[:, 0], out[:, 1], atol=1e-6)  # per channel: the scales no longer differ


def test_minmax_maps_every_train_channel_onto_0_1() -> None:
    scaler = ImageScaler("minmax").fit(_train())
    assert scaler.offset_ == [0.0, 1000.0]
    assert scaler.spread_ == [11.0, 1100.0]
    out = scaler.transform(_train())
    assert _channels(out).min(axis=1).tolist() == [0.0, 0.0]
    assert _channels(out).max(axis=1).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(_channels(out)[0], np.arange(12) / 11, atol=1e-6)


def test_robust_uses_median_and_interquartile_range() -> None:
    scaler = ImageScaler("robust").fit(_train())
    # 0..11: quartiles 2.75, 5.5, 8.25 (linear interpolation) -> median 5.5, IQR 5.5; channel 1 times 100
    assert scaler.offset_ == pytest.approx([5.5, 1550.0])
    assert scaler.spread_ == pytest.approx([5.5, 550.0])
    out = _channels(scaler.transform(_train()))
    assert np.median(out, axis=1) == pytest.approx([0.0, 0.0], abs=1e-6)
    q25, q75 = np.percentile(out, [25, 75], axis=1)
    assert (q75 - q25) == pytest.approx([1.0, 1.0], abs=1e-6)


def test_robust_ignores_an_outlier_that_moves_the_mean() -> None:
    train = _train()
    train[0, 0, 0, 0] = 1e6  # channel 0: one huge pixel instead of 0
    robust, standard = ImageScaler("robust").fit(train), ImageScaler("standard").fit(train)
    assert robust.offset_[0] == pytest.approx(6.5)  # median of 1..11 and 1e6: (6 + 7) / 2, one rank up
    assert standard.offset_[0] > 8e4


def test_none_is_the_identity() -> None:
    scaler = ImageScaler("none").fit(_train())
    assert (scaler.offset_, scaler.spread_) == ([0.0, 0.0], [1.0, 1.0])
    out = scaler.transform(_val())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, _val())


@pytest.mark.parametrize("method", ["standard", "minmax", "robust"])
def test_a_constant_channel_is_centred_not_divided(method: str) -> None:
    train = _train()
    train[:, 1] = 7.0
    scaler = ImageScaler(method).fit(train)
    assert scaler.spread_[1] == 1.0
    assert scaler.offset_[1] == 7.0
    out = scaler.transform(train)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 1], np.zeros((3, 2, 2)))
    # a new value in the constant channel keeps its distance in raw units rather than exploding
    probe = train[:1].copy()
    probe[0, 1] = 9.0
    np.testing.assert_array_equal(scaler.transform(probe)[0, 1], np.full((2, 2), 2.0))


def test_transform_takes_n_h_w_as_one_channel() -> None:
    grey = np.arange(12, dtype="float32").reshape(3, 1, 2, 2)
    scaler = ImageScaler("minmax").fit(grey)
    flat = scaler.transform(grey[:, 0])
    assert flat.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(flat, scaler.transform(grey))
    assert flat.max() == 1.0 and flat.min() == 0.0


def test_transform_accepts_integer_pixels() -> None:
    scaler = ImageScaler("minmax").fit(_train())
    out = scaler.transform(_train().astype("int64"), "val split")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, scaler.transform(_train()))


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (np.zeros((2, 3, 2, 2)), "val split: expected images of shape C x H x W = 2 x 2 x 2, got 3 x 2 x 2"),
        (np.zeros((2, 2, 2, 5)), "val split: expected images of shape C x H x W = 2 x 2 x 2, got 2 x 2 x 5"),
        (np.zeros((2, 2, 2)), "val split: expected images of shape C x H x W = 2 x 2 x 2, got 1 x 2 x 2"),
        (np.zeros((2, 8)), "val split: expected images of shape C x H x W = 2 x 2 x 2, got 8"),
    ],
    ids=["channels", "width", "one-channel-for-two", "flat"],
)
def test_transform_refuses_the_wrong_shape(images: np.ndarray, expected: str) -> None:
    scaler = ImageScaler("standard").fit(_train())
    with pytest.raises(PipelineError) as info:
        scaler.transform(images, "val split")
    assert str(info.value) == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_transform_refuses_non_finite_pixels(bad: float) -> None:
    scaler = ImageScaler("standard").fit(_train())
    images = _train()
    images[2, 1, 0, 1] = bad
    with pytest.raises(PipelineError, match=r"^test split: expected finite pixel values, got NaN or \+/-inf$"):
        scaler.transform(images, "test split")


def test_transform_refuses_text_pixels() -> None:
    scaler = ImageScaler("standard").fit(_train())
    with pytest.raises(PipelineError, match=r"^rows: expected numeric images, got dtype <U1$"):
        scaler.transform(np.full((3, 2, 2, 2), "a"), "rows")


def test_transform_before_fit_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"not fitted yet; call fit on the train images first"):
        ImageScaler("standard").transform(_train())


def test_fit_refuses_anything_but_n_c_h_w() -> None:
    with pytest.raises(PipelineError, match=r"expected images N x C x H x W, got shape \(3, 2, 2\)"):
        ImageScaler("standard").fit(np.zeros((3, 2, 2)))


def test_fit_refuses_an_unknown_method() -> None:
    with pytest.raises(PipelineError, match=r"scale\.method: expected one of .*'robust'.*, got 'zscore'"):
        ImageScaler("zscore").fit(_train())


@pytest.mark.parametrize("method", ["standard", "minmax", "robust", "none"])
def test_to_dict_from_dict_round_trip_gives_identical_output(method: str) -> None:
    scaler = ImageScaler(method).fit(_train())
    state = json.loads(json.dumps(scaler.to_dict()))  # as it is saved and read back
    assert state["kind"] == "image" and state["method"] == method and state["shape_"] == [2, 2, 2]
    rebuilt = ImageScaler.from_dict(state)
    assert rebuilt.to_dict() == scaler.to_dict()
    for images in (_train(), _val()):
        np.testing.assert_array_equal(rebuilt.transform(images), scaler.transform(images))


@pytest.mark.parametrize("method", ["standard", "minmax", "robust"])
def test_fit_uses_train_only_and_transform_changes_nothing(method: str) -> None:
    scaler = ImageScaler(method).fit(_train())
    fitted = scaler.to_dict()
    scaler.transform(_val(), "val split")
    assert scaler.to_dict() == fitted  # transforming val leaves the fitted state alone
    leaky = ImageScaler(method).fit(np.concatenate([_train(), _val()]))
    # the val values would have moved the statistics
    assert (leaky.offset_, leaky.spread_) != (fitted["offset_"], fitted["spread_"])
    # val is scaled with the train statistics: channel 0 of the -500 image under minmax is -500 / 11
    if method == "minmax":
        assert scaler.transform(_val())[0, 0, 0, 0] == pytest.approx(-500 / 11)
