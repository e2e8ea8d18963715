"""Mini-batch augmentation: flips mirror, shifts move and zero-fill, noise has its std and spares padding."""

from __future__ import annotations

import pytest
import torch

from pipeline.training.augment import augment


def _images(b: int = 200, c: int = 2, h: int = 5, w: int = 6) -> torch.Tensor:
    """Distinct values everywhere, so any mirroring or moving shows."""
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)


def _dot(b: int, size: int = 7, row: int = 3, col: int = 3) -> torch.Tensor:
    """``b`` one-channel images, black but for a single bright pixel at (row, col)."""
    x = torch.zeros(b, 1, size, size)
    x[:, 0, row, col] = 1.0
    return x


def _sequences() -> torch.Tensor:
    """Three series of 2 features over 5 steps, padded after 5, 3 and 1 real steps; mask last."""
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    x[..., :2] *= mask.unsqueeze(-1)  # padding steps are all zero
    x[..., 2] = mask
    return x


@pytest.mark.parametrize(("flip", "dim"), [("horizontal", -1), ("vertical", -2)])
def test_a_flip_mirrors_about_half_the_images_and_leaves_the_rest(flip: str, dim: int) -> None:
    x = _images()
    torch.manual_seed(0)
    out = augment(x, "image", flip=flip)
    mirrored = (out == x.flip(dim)).flatten(1).all(dim=1)  # (B,)
    unchanged = (out == x).flatten(1).all(dim=1)
    assert bool((mirrored ^ unchanged).all())  # each image is exactly one of the two
    assert 40 < int(mirrored.sum()) < 160  # both outcomes occur, about half each


def test_both_flips_each_axis_independently() -> None:
    x = _images()
    torch.manual_seed(0)
    out = augment(x, "image", flip="both")
    outcomes = torch.stack([(out == v).flatten(1).all(dim=1)
                            for v in (x, x.flip(-1), x.flip(-2), x.flip(-2, -1))])  # (4, B)
    assert bool((outcomes.sum(dim=0) == 1).all())
    assert bool((outcomes.sum(dim=1) > 20).all())  # all four combinations occur


def test_shift_moves_a_pixel_by_at_most_shift_and_zero_fills() -> None:
    b, shift = 300, 2
    x = _dot(b)
    torch.manual_seed(0)
    out = augment(x, "image", shift=shift)
    assert out.shape == x.shape
    assert bool(((out == 0) | (out == 1)).all())  # zero-filled, nothing interpolated or wrapped in
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(b))  # the dot is 2 pixels from every edge: it stays
    position = out[:, 0].flatten(1).argmax(dim=1)  # (B,)
    rows, cols = position // 7, position % 7
    assert int((rows - 3).abs().max()) == shift and int((cols - 3).abs().max()) == shift  # the full range is used
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == (2 * shift + 1) ** 2  # offsets differ


def test_shift_drops_what_leaves_the_frame_instead_of_wrapping() -> None:
    x = _dot(300, row=0, col=0)  # at the corner: any shift up or left pushes it out
    torch.manual_seed(0)
    out = augment(x, "image", shift=1)
    kept = out.sum(dim=(1, 2, 3))
    assert set(kept.tolist()) == {0.0, 1.0}
    assert float(out[:, 0, -1, :].sum()) == 0 and float(out[:, 0, :, -1].sum()) == 0  # never wrapped round
    assert int(out[:, 0, 2:, :].sum() + out[:, 0, :, 2:].sum()) == 0  # never moved more than one pixel


def _moved(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference translation of one (C, H, W) image, written plainly: down by dy, right by dx, zeros in."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[:, r, c] = image[:, r - dy, c - dx]
    return out


def test_shift_matches_a_plain_translation_of_all_channels_together() -> None:
    x = _images(b=40, c=3, h=5, w=6) + 1  # no zeros in the input, so zero-fill is unambiguous
    torch.manual_seed(0)
    out = augment(x, "image", shift=2)
    seen = set()
    for image, result in zip(x, out, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(_moved(image, dy, dx), result)]
        assert len(matches) == 1  # one offset pair, shared by every channel
        seen.add(matches[0])
    assert len(seen) > 10  # independent offsets per image


@pytest.mark.parametrize("modality", ["tabular", "image"])
def test_noise_has_the_requested_std(modality: str) -> None:
    x = torch.ones(400, 250) if modality == "tabular" else torch.ones(100, 1, 30, 40)
    torch.manual_seed(0)
    out = augment(x, modality, noise=0.3)
    assert abs(float((out - x).std()) - 0.3) < 0.01
    assert abs(float((out - x).mean())) < 0.01


def test_sequence_noise_spares_padding_and_the_mask() -> None:
    x = _sequences()
    before = x.clone()
    torch.manual_seed(0)
    out = augment(x, "sequence", noise=0.5)
    assert torch.equal(x, before)  # not modified in place
    assert torch.equal(out[..., -1], x[..., -1])  # the mask channel, exactly
    padding = x[..., -1] == 0
    assert torch.equal(out[padding], torch.zeros_like(out[padding]))  # padding steps stay exactly zero
    assert bool((out[~padding][:, :-1] != x[~padding][:, :-1]).all())  # every real feature is jittered


def test_same_seed_same_output_and_a_new_tensor() -> None:
    x = _images(b=20)
    before = x.clone()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(augment(x, "image", flip="both", shift=2, noise=0.1))
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(x, before)
    torch.manual_seed(8)
    assert not torch.equal(augment(x, "image", flip="both", shift=2, noise=0.1), outs[0])


@pytest.mark.parametrize(("modality", "x"), [("tabular", torch.ones(4, 3)), ("image", torch.ones(2, 1, 3, 3)),
                                             ("sequence", torch.ones(2, 4, 3))])
def test_all_off_returns_x_itself_and_draws_nothing(modality: str, x: torch.Tensor) -> None:
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert augment(x, modality) is x
    assert augment(x, modality, flip="none", shift=0, noise=0.0) is x
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("modality", "kwargs", "name"),
    [
        ("image", {"flip": "diagonal"}, "train.augment.flip"),
        ("tabular", {"flip": "horizontal"}, "train.augment.flip"),
        ("sequence", {"flip": "vertical"}, "train.augment.flip"),
        ("tabular", {"shift": 2}, "train.augment.shift"),
        ("sequence", {"shift": 1}, "train.augment.shift"),
        ("image", {"shift": -1}, "train.augment.shift"),
        ("image", {"shift": 1.5}, "train.augment.shift"),
        ("image", {"noise": -0.1}, "train.augment.noise"),
        ("image", {"noise": float("nan")}, "train.augment.noise"),
        ("video", {}, "modality"),
    ],
)
def test_bad_arguments_name_the_parameter(modality: str, kwargs: dict, name: str) -> None:
    x = {"tabular": torch.ones(2, 3), "sequence": torch.ones(2, 4, 3)}.get(modality, torch.ones(2, 1, 3, 3))
    with pytest.raises(ValueError, match=f"^{name}: expected .*, got "):
        augment(x, modality, **kwargs)


def test_a_tensor_of_the_wrong_rank_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x: expected a \(B, C, H, W\) tensor"):
        augment(torch.ones(2, 3), "image", flip="horizontal")


def test_every_modality_has_a_batch_shape_and_flips_are_the_schemas() -> None:
    """The per-modality tables cover exactly the modalities; an unknown flip is refused with the schema's values."""
    from typing import get_args

    from pipeline.config.data import Modality
    from pipeline.training.augment import _NDIM, _SHAPES

    assert set(_NDIM) == set(_SHAPES) == set(get_args(Modality))
    with pytest.raises(ValueError, match=r"^train\.augment\.flip: expected one of \('none', 'horizontal', 'vertical', "
                                         r"'both'\), got 'diagonal'$"):
        augment(torch.ones(2, 1, 3, 3), "image", flip="diagonal")
