"""Random changes to one training mini-batch: flips, shifts and Gaussian noise (a pure function, vectorised)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.config.base import check_choice
from pipeline.config.data import Modality
from pipeline.config.training import Flip

# per modality, the rank and shape of a batch (tests/training check the keys against the type)
_NDIM = {"tabular": 2, "image": 4, "sequence": 3}
_SHAPES = {"tabular": "(B, F)", "image": "(B, C, H, W)", "sequence": "(B, T, F + 1)"}


def _check(x: torch.Tensor, modality: Modality, flip: Flip, shift: int, noise: float) -> None:
    """Raise ValueError naming the first argument that is out of range or does not fit ``modality``."""
    check_choice("modality", modality, Modality)
    check_choice("train.augment.flip", flip, Flip)
    # bool is an int subclass, but shift=True is a mistake rather than a one-pixel shift
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"train.augment.shift: expected an integer >= 0, got {shift!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"train.augment.noise: expected a finite number >= 0, got {noise!r}")
    if modality != "image" and flip != "none":
        raise ValueError(
            f"train.augment.flip: expected 'none' for {modality} data (flips are for images), got {flip!r}"
        )
    if modality != "image" and shift != 0:
        raise ValueError(f"train.augment.shift: expected 0 for {modality} data (shifts are for images), got {shift}")
    if x.dim() != _NDIM[modality]:
        raise ValueError(f"x: expected a {_SHAPES[modality]} tensor for {modality} data, got shape {tuple(x.shape)}")
    if noise > 0 and not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor to add noise to, got {x.dtype}")


def _flip(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Mirror each image along ``dim`` with probability 0.5, independently per image."""
    chosen = torch.rand(x.shape[0], device=x.device) < 0.5  # (B,)
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)


def _shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image by its own offsets in [-shift, shift] rows and columns, zero-filling what is uncovered.

    Pads every side by ``shift`` zeros and cuts each image's (H, W) window out of the padded batch at its own
    corner, with one advanced-indexing gather for the whole batch.
    """
    b, c, h, w = x.shape
    offsets = torch.randint(-shift, shift + 1, (2, b), device=x.device)  # (2, B): rows down, columns right
    padded = F.pad(x, (shift, shift, shift, shift))  # (B, C, H + 2s, W + 2s), zeros around
    # content moved down by dy means output row r shows input row r - dy, i.e. padded row r - dy + shift
    rows = torch.arange(h, device=x.device) + (shift - offsets[0]).unsqueeze(1)  # (B, H)
    cols = torch.arange(w, device=x.device) + (shift - offsets[1]).unsqueeze(1)  # (B, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, C, H, W)


def augment(
    x: torch.Tensor, modality: Modality, flip: Flip = "none", shift: int = 0, noise: float = 0.0
) -> torch.Tensor:
    """Randomly flip, shift and add noise to one training mini-batch, on whatever device it is on.

    Every random draw comes from the global torch RNG of ``x``'s device, so a seeded run repeats exactly and a
    checkpoint of the global RNG state resumes it. Each sample gets its own draws; nothing loops over samples.

    Args:
        x: The batch: (B, F) for ``tabular``, (B, C, H, W) for ``image``, (B, T, F + 1) for ``sequence``
            (the last channel the 0/1 mask of real time steps, padding steps all zero).
        modality: ``tabular``, ``image`` or ``sequence``.
        flip: Images only: ``none``, ``horizontal`` (along W), ``vertical`` (along H) or ``both`` (each axis
            independently); each image is mirrored with probability 0.5 per axis.
        shift: Images only: translate each image by independent random whole-pixel offsets in
            [-shift, shift] on each axis, filling with zeros (no wrap-around).
        noise: Standard deviation of Gaussian noise added to every feature: every pixel, every column, or for
            sequences the feature channels of real time steps only (padding and the mask stay exactly as given).

    Returns:
        A new tensor of ``x``'s shape, or ``x`` itself when every setting is off (then no random number is
        drawn). ``x`` is never modified.

    Raises:
        ValueError: An unknown modality or flip, a negative shift or noise, a flip or shift for non-image
            data, or an ``x`` whose rank does not fit ``modality``.
    """
    _check(x, modality, flip, shift, noise)
    if flip == "none" and shift == 0 and noise == 0:
        return x
    out = x
    # flips before shifts, so the two draws of a "both" flip and the shift offsets always come in the same order
    if flip in ("horizontal", "both"):
        out = _flip(out, -1)
    if flip in ("vertical", "both"):
        out = _flip(out, -2)
    if shift > 0:
        out = _shift(out, shift)
    if noise > 0:
        if modality == "sequence":
            features, mask = out[..., :-1], out[..., -1:]  # (B, T, F), (B, T, 1)
            jitter = torch.randn(features.shape, device=x.device, dtype=x.dtype) * noise
            # masked: padding steps must stay exactly zero, and the mask channel is passed through untouched
            out = torch.cat([features + jitter * mask, mask], dim=-1)
        else:
            out = out + torch.randn(out.shape, device=x.device, dtype=x.dtype) * noise
    return out
