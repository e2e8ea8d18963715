"""A recurrent network (RNN, LSTM or GRU) over packed variable-length sequences, or images read row by row."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from pipeline.config.base import check_choice
from pipeline.config.training import Activation, Cell, Norm
from pipeline.nets.fnn import head

# one recurrent layer per value of model.rnn.cell (tests/nets check the keys against the type)
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNN(nn.Module):
    """A recurrent encoder whose last hidden state feeds a dense head producing logits.

    Sequences come as (B, T, F + 1), padded, with the last channel the mask; each series is packed with its
    own length, so the recurrence never runs over padding and a series' output does not depend on how long
    the others are. Images (B, C, H, W) are read as H steps of C x W values.

    Args:
        input_size: Values per step: sequence features (without the mask), or C x W for images.
        hidden_size: Units of the recurrent state.
        out_features: Number of classes (or 1 for regression).
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        layers: Stacked recurrent layers.
        bidirectional: Also read each series backwards; both final states feed the head.
        images: Inputs are images (read row by row) rather than masked sequences.
        hidden: Units per hidden layer of the dense head.
        activation: Activation of the head, one of :data:`pipeline.config.training.Activation`.
        dropout: Drop probability between recurrent layers and in the head.
        bias: Give the recurrent cells and head layers biases.
        norm: ``none``, ``batch`` or ``layer`` normalisation in the dense head.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        out_features: int,
        cell: Cell = "gru",
        layers: int = 1,
        bidirectional: bool = False,
        images: bool = False,
        hidden: Sequence[int] = (),
        activation: Activation = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        check_choice("model.rnn.cell", cell, Cell)
        check_choice("model.activation", activation, Activation)
        self.images = images
        self.directions = 2 if bidirectional else 1
        self.recurrent = CELLS[cell](
            input_size, hidden_size, num_layers=layers, bias=bias, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.head = head(hidden_size * self.directions, hidden, out_features, activation, dropout, bias, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sequences (B, T, F + 1) or images (B, C, H, W) -> logits (B, out_features)."""
        if self.images:
            b, c, h, w = x.shape
            steps = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C*W): one row per step
            lengths = torch.full((b,), h, dtype=torch.int64)
        else:
            steps = x[:, :, :-1]  # (B, T, F)
            lengths = x[:, :, -1].sum(dim=1).round().to(torch.int64).clamp(min=1).cpu()  # real steps per series
        packed = pack_padded_sequence(steps, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.recurrent(packed)
        final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c); h: (layers * dirs, B, H)
        last = final[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)  # (B, dirs * H)
        return self.head(last)
