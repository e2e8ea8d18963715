"""A feed-forward (fully connected) network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def head(
    in_features: int, hidden: Sequence[int], out_features: int, activation: str, dropout: float, bias: bool = True
) -> nn.Sequential:
    """Linear -> activation -> [dropout] per hidden layer, then a linear layer to the logits.

    The whole of the FNN, and the dense head of the CNN and RNN.
    """
    layers: list[nn.Module] = []
    width = in_features
    for units in hidden:
        layers += [nn.Linear(width, units, bias=bias), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, out_features, bias=bias))
    return nn.Sequential(*layers)


class FNN(nn.Module):
    """Linear -> activation -> dropout blocks, then a linear output layer producing logits.

    Args:
        in_features: Input width; image or sequence inputs are flattened to this.
        hidden: Units per hidden layer, in order.
        out_features: Number of classes (logits out).
        activation: One of :data:`ACTIVATIONS`.
        dropout: Drop probability after each hidden activation; 0 adds no dropout layer.
        bias: Give every linear layer a bias.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.layers = head(in_features, hidden, out_features, activation, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, *) with prod(*) == in_features to logits of shape (B, out_features)."""
        return self.layers(x.flatten(start_dim=1))  # (B, in_features) -> (B, out_features)
