"""A convolutional network: Conv2d over images, Conv1d over time for sequences."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.nets.fnn import ACTIVATIONS, head


class CNN(nn.Module):
    """Conv blocks, global average pooling, then a dense head producing logits.

    Each block is conv -> [batch norm] -> activation -> [2x pooling] -> [dropout]. Images come as
    (B, C, H, W). Sequences come as (B, T, F + 1), padded, with the last channel the mask of real steps; they
    are convolved over time with the mask as one more input channel, and the global average counts only the
    positions that saw a real step, so padding never dilutes a short series.

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
        activation: One of :data:`ACTIVATIONS`.
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
        pool: str = "max",
        batch_norm: bool = True,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims: expected 1 (sequences) or 2 (images), got {dims}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if pool not in ("max", "avg", "none"):
            raise ValueError(f"pool: expected 'max', 'avg' or 'none', got {pool!r}")
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
        mask = x[:, :, -1]  # (B, T): 1 on real steps
        h = self.features(x.transpose(1, 2))  # (B, F + 1, T) -> (B, C', T')
        # which output positions saw at least one real step: the mask shrunk to T' the way the blocks shrink time
        seen = F.adaptive_max_pool1d(mask.unsqueeze(1), h.shape[-1])  # (B, 1, T')
        pooled = (h * seen).sum(dim=2) / seen.sum(dim=2).clamp(min=1.0)  # (B, C')
        return self.head(pooled)
