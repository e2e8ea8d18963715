"""A feed-forward (fully connected) network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.config.base import check_choice
from pipeline.config.training import Activation, Norm

# one layer per value of model.activation (tests/nets check the keys against the type)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def head(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: Activation,
    dropout: float,
    bias: bool = True,
    norm: Norm = "none",
) -> nn.Sequential:
    """Linear -> [batch or layer norm] -> activation -> [dropout] per hidden layer, then a linear layer to the logits.

    The whole of the FNN, and the dense head of the CNN and RNN. The norm sits before the activation, as in
    Ioffe and Szegedy (2015), so each activation sees inputs centred whatever the earlier layers drift to; a
    linear layer followed by a norm needs no bias of its own (the norm's shift replaces it).
    """
    check_choice("model.norm", norm, Norm)
    layers: list[nn.Module] = []
    width = in_features
    for units in hidden:
        layers.append(nn.Linear(width, units, bias=bias and norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(units))
        elif norm == "layer":
            layers.append(nn.LayerNorm(units))
        layers.append(ACTIVATIONS[activation]())
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
        activation: One of :data:`pipeline.config.training.Activation`.
        dropout: Drop probability after each hidden activation; 0 adds no dropout layer.
        bias: Give every linear layer a bias (hidden layers followed by a norm never have one).
        norm: ``none``, ``batch`` or ``layer`` normalisation after each hidden linear layer.

    Raises:
        ValueError: On an activation or norm the schema does not admit (a spec from a model bundle's
            ``net.json`` reaches here without the schema).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: Activation = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        check_choice("model.activation", activation, Activation)
        self.layers = head(in_features, hidden, out_features, activation, dropout, bias, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, *) with prod(*) == in_features to logits of shape (B, out_features)."""
        return self.layers(x.flatten(start_dim=1))  # (B, in_features) -> (B, out_features)
