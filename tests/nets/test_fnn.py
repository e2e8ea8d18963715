from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.nets import build_net
from pipeline.nets.fnn import FNN


def test_layers_follow_hidden_sizes_activation_and_dropout() -> None:
    net = FNN(in_features=5, hidden=[8, 4], out_features=3, activation="tanh", dropout=0.25)
    kinds = [type(m) for m in net.layers]
    assert kinds == [nn.Linear, nn.Tanh, nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]
    linears = [m for m in net.layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 8), (8, 4), (4, 3)]
    assert all(m.p == 0.25 for m in net.layers if isinstance(m, nn.Dropout))


def test_zero_dropout_adds_no_dropout_layer_and_output_is_logits() -> None:
    torch.manual_seed(0)
    net = FNN(4, [6], 2, activation="relu", dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in net.layers)
    x = torch.randn(7, 4)
    out = net(x)
    assert out.shape == (7, 2)
    first, _, last = net.layers
    assert torch.allclose(out, last(torch.relu(first(x))))  # raw logits: no softmax at the end


def test_flattens_multidimensional_input() -> None:
    assert FNN(12, [3], 2)(torch.randn(5, 3, 4)).shape == (5, 2)


def test_build_net_from_spec_and_refuses_unknown_kind() -> None:
    net = build_net({"kind": "fnn", "in_features": 3, "hidden": [2], "out_features": 2, "activation": "sigmoid", "dropout": 0.0})
    assert isinstance(net.layers[1], nn.Sigmoid)
    with pytest.raises(PipelineError, match="model.kind.*'cnn', 'fnn', 'rnn'"):
        build_net({"kind": "transformer"})
    with pytest.raises(PipelineError, match="net spec for 'fnn'"):
        build_net({"kind": "fnn", "in_features": 3})
