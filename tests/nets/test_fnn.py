from __future__ import annotations

from typing import get_args

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
    with pytest.raises(PipelineError, match="model.kind.*'fnn', 'cnn', 'rnn'"):
        build_net({"kind": "transformer"})
    with pytest.raises(PipelineError, match="net spec for 'fnn'"):
        build_net({"kind": "fnn", "in_features": 3})


@pytest.mark.parametrize(("norm", "layer"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_norm_sits_between_each_hidden_linear_and_its_activation(norm: str, layer: type) -> None:
    net = FNN(5, [8, 4], 3, activation="relu", dropout=0.1, norm=norm)
    kinds = [type(m) for m in net.layers]
    assert kinds == [nn.Linear, layer, nn.ReLU, nn.Dropout, nn.Linear, layer, nn.ReLU, nn.Dropout, nn.Linear]
    hidden = [m for m in net.layers if isinstance(m, nn.Linear)][:-1]
    assert all(m.bias is None for m in hidden)  # the norm's shift does a bias's job
    assert net.layers[-1].bias is not None
    torch.manual_seed(0)
    net.train()
    before = net.layers[0](torch.randn(64, 5) * 10 + 3)
    normed = net.layers[1](before)
    # batch norm: each unit centred over the batch; layer norm: each row centred over its units
    axis = 0 if norm == "batch" else 1
    assert normed.mean(dim=axis).abs().max() < 1e-5
    assert normed.var(dim=axis, unbiased=False).sub(1).abs().max() < 1e-3


def test_norm_reaches_the_dense_head_of_every_net_through_the_spec() -> None:
    from pipeline.config import ModelConfig
    from pipeline.nets import net_spec
    from tests.factories import build_params

    model: ModelConfig = build_params(model={"norm": "layer", "hidden": [6]}).model
    for kind, modality, shape in (("fnn", "tabular", (5,)), ("cnn", "image", (1, 8, 8)), ("rnn", "sequence", (7, 3))):
        spec = net_spec(model.model_copy(update={"kind": kind}), modality, shape, 2)
        net = build_net(spec)
        assert sum(isinstance(m, nn.LayerNorm) for m in net.modules()) == 1, kind


def test_unknown_norm_is_refused() -> None:
    with pytest.raises(ValueError, match="model.norm: expected one of"):
        FNN(3, [4], 2, norm="group")


def test_every_table_has_one_entry_per_value_the_schema_admits() -> None:
    """The nets' dispatch tables cover exactly their knob's values, so a lookup after the check cannot miss."""
    from pipeline.config.training import Activation, Cell, Init, NetKind
    from pipeline.nets import DRAWS, NETS, NONLINEARITIES
    from pipeline.nets.fnn import ACTIVATIONS
    from pipeline.nets.rnn import CELLS

    assert set(NETS) == set(get_args(NetKind))
    assert set(ACTIVATIONS) == set(get_args(Activation))
    assert set(NONLINEARITIES) == set(get_args(Activation))
    assert set(CELLS) == set(get_args(Cell))
    assert set(DRAWS) | {"default"} == set(get_args(Init))


SPEC = {"kind": "fnn", "in_features": 3, "hidden": [2], "out_features": 2, "activation": "relu", "dropout": 0.0}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"init": "he"}, PipelineError, "model.init: expected one of ('default', 'xavier_uniform', 'xavier_normal', "
                                        "'kaiming_uniform', 'kaiming_normal', 'orthogonal'), got 'he'"),
        ({"kind": "mlp"}, PipelineError, "model.kind: expected one of ('fnn', 'cnn', 'rnn'), got 'mlp'"),
        ({"activation": "swish"}, ValueError, "model.activation: expected one of ('relu', 'leaky_relu', 'elu', "
                                              "'gelu', 'sigmoid', 'tanh'), got 'swish'"),
    ],
    ids=["init", "kind", "activation"],
)
def test_a_spec_with_a_value_the_schema_does_not_admit_is_refused(change: dict, error: type, message: str) -> None:
    """A bundle's net.json reaches build_net without the schema, so the spec's values are checked there."""
    with pytest.raises(error) as info:
        build_net({**SPEC, **change})
    assert str(info.value) == message
