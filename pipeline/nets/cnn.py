"""A convolutional network: Conv2d over images, Conv1d over time for sequences."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.config.base import check_choice
from pipeline.config.training import Activation, Norm, Pool
from pipeline.nets.fnn import ACTIVATIONS, head


class CNN(nn.Module):
    """Conv blocks, global average pooling, then a dense head producing logits.

    Each block is conv -> [batch norm] -> activation -> [2x pooling] -> [dropout]. Images come as
    (B, C, H, W). Sequences come as (B, T, F + 1), padded, with the last channel the mask of real steps; they
    are convolved over time with the mask as one more input channel. Each series' valid length is tracked
    through every block, and the positions past it are kept out of every conv, pooling window and the global
    average, so a series' output is exactly what it would be alone: it never depends on how far it was padded,
    that is, on how long the other series of its batch are.

    Args:
        in_channels: Image channels, or sequence features + 1 (the mask).
        dims: 2 for images, 1 for sequences.
        channels: Output channels per conv block.
        out_features: Number of classes (or 1 for regression).
        kernel: Kernel size of every conv.
        stride: Stride of every conv.
        padding: Zero padding of every conv.
        pool: ``max``, ``avg`` or ``none``: 2x pooling after each block (ceil mode, so small maps never vanish).
        batch_norm: Batch normalisation after each conv.
        hidden: Units per hidden layer of the dense head.
        activation: One of :data:`pipeline.config.training.Activation`.
        dropout: Drop probability after each block and each head layer.
        bias: Give convs (without batch norm, whose shift replaces it) and head layers a bias.
        norm: ``none``, ``batch`` or ``layer`` normalisation in the dense head.
    """

    def __init__(
        self,
        in_channels: int,
        dims: int,
        channels: Sequence[int],
        out_features: int,
        kernel: int = 3,
        stride: int = 1,
        padding: int = 1,
        pool: Pool = "max",
        batch_norm: bool = True,
        hidden: Sequence[int] = (),
        activation: Activation = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims: expected 1 (sequences) or 2 (images), got {dims}")
        check_choice("model.activation", activation, Activation)
        check_choice("model.cnn.pool", pool, Pool)
        if not channels:
            raise ValueError("channels: expected at least one conv block, got none")
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        batch_norm_layer = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        pooling = {"max": nn.MaxPool2d if dims == 2 else nn.MaxPool1d,
                   "avg": nn.AvgPool2d if dims == 2 else nn.AvgPool1d}.get(pool)
        self.dims = dims
        blocks: list[nn.Module] = []
        width = in_channels
        for out in channels:
            blocks.append(conv(width, out, kernel, stride=stride, padding=padding, bias=bias and not batch_norm))
            if batch_norm:
                blocks.append(batch_norm_layer(out))
            blocks.append(ACTIVATIONS[activation]())
            if pooling is not None:
                blocks.append(pooling(2, ceil_mode=True))
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = out
        self.features = nn.Sequential(*blocks)
        self.head = head(width, hidden, out_features, activation, dropout, bias, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) or sequences (B, T, F + 1) -> logits (B, out_features)."""
        if self.dims == 2:
            h = self.features(x)  # (B, C', H', W')
            return self.head(h.mean(dim=(2, 3)))  # (B, C') -> (B, out_features)
        lengths = x[:, :, -1].sum(dim=1).round().to(torch.int64).clamp(min=1)  # (B,): real steps per series
        h, lengths = self._over_time(x.transpose(1, 2), lengths)  # (B, F + 1, T) -> (B, C', T')
        valid = _valid(lengths, h.shape[-1]).unsqueeze(1)  # (B, 1, T')
        pooled = (h * valid).sum(dim=2) / lengths.unsqueeze(1).to(h.dtype)  # (B, C'): the mean of valid positions
        return self.head(pooled)

    def _over_time(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks over (B, C, T) with each series' valid length (B,) tracked through them.

        Past a series' valid length lie the batch's padding and what the blocks made of it (a bias, batch
        norm's shift): nonzero values that a series alone would not have. They are zeroed before each conv
        (where the series alone meets the conv's own zero padding), -inf for max pooling and left out of
        average pooling's sums and counts, so every valid position is computed from valid ones only.
        """
        for layer in self.features:
            if isinstance(layer, nn.Conv1d):
                h = h * _valid(lengths, h.shape[-1]).unsqueeze(1)  # (B, C, T): padding as true zeros
                h = layer(h)  # (B, C', T')
                (k,), (s,), (p,) = layer.kernel_size, layer.stride, layer.padding
                lengths = ((lengths + 2 * p - k) // s + 1).clamp(min=1)
            elif isinstance(layer, nn.MaxPool1d):
                valid = _valid(lengths, h.shape[-1]).unsqueeze(1)  # (B, 1, T)
                h = layer(h.masked_fill(~valid, float("-inf")))  # (B, C, ceil(T / 2))
                lengths = (lengths + 1) // 2  # ceil mode
                h = h.masked_fill(~_valid(lengths, h.shape[-1]).unsqueeze(1), 0.0)  # no -inf left behind
            elif isinstance(layer, nn.AvgPool1d):
                valid = _valid(lengths, h.shape[-1]).unsqueeze(1).to(h.dtype)  # (B, 1, T)
                # both averages share each window's divisor, so their ratio is sum(valid values) / count(valid)
                h = layer(h * valid) / layer(valid).clamp(min=1e-12)  # (B, C, ceil(T / 2))
                lengths = (lengths + 1) // 2
            else:  # batch norm (per position in eval mode), activation, dropout
                h = layer(h)
        return h, lengths


def _valid(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) booleans: True on the first ``lengths[b]`` positions of each series."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
