"""The CNN and RNN: shapes per modality, padding that never changes a series' output, and the specs train builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.nets import build_net, net_spec
from pipeline.nets.cnn import CNN
from pipeline.nets.rnn import RNN
from tests.factories import build_params


def _series(lengths: list[int], features: int, pad_to: int, seed: int = 0) -> torch.Tensor:
    """Padded series (B, pad_to, features + 1) with random values on real steps and the mask last."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), pad_to, features + 1)
    for i, n in enumerate(lengths):
        x[i, :n, :features] = torch.randn(n, features, generator=g)
        x[i, :n, features] = 1.0
    return x


def test_cnn_on_images_has_the_configured_blocks_and_gives_logits() -> None:
    net = CNN(in_channels=3, dims=2, channels=[4, 8], out_features=5, pool="avg", batch_norm=True, hidden=[6],
              dropout=0.1)
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.Dropout] * 2
    assert net.features[0].bias is None  # batch norm's shift replaces the conv bias
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    # ceil-mode pooling: a 1x1 map survives a third block instead of vanishing
    assert CNN(1, 2, [2, 2, 2, 2], 3)(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_cnn_over_time_ignores_padding() -> None:
    torch.manual_seed(0)
    net = CNN(in_channels=3, dims=1, channels=[4], out_features=2, pool="none", batch_norm=False, padding=0,
              kernel=1).eval()
    x = _series([5, 3], features=2, pad_to=5)
    longer = torch.cat([x, torch.zeros(2, 7, 3)], dim=1)  # the same series padded to 12 steps
    assert torch.allclose(net(x), net(longer), atol=1e-6)


def _randomise_batch_norm(net: nn.Module, seed: int = 1) -> None:
    """Give every batch norm layer random statistics and affine parameters, as training would.

    Fresh ones (mean 0, variance 1, scale 1, shift 0) map a zero to a zero, which would hide padding leaking
    through a batch norm's shift.
    """
    g = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g))
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=g))
            module.bias.data.copy_(torch.randn(n, generator=g))


SHORT = [5, 6, 7, 9, 13]  # odd and even lengths: ceil-mode pooling's last window is then partial or whole
CNN_SETTINGS = [
    ({"pool": "max", "batch_norm": True}, SHORT),
    ({"pool": "avg", "batch_norm": True}, SHORT),
    ({"pool": "none", "batch_norm": True}, SHORT),
    ({"pool": "max", "batch_norm": False, "stride": 2}, SHORT),
    ({"pool": "avg", "batch_norm": False, "stride": 2, "kernel": 5, "padding": 2}, SHORT),
    ({"pool": "none", "batch_norm": False, "stride": 2, "padding": 0}, [15, 16, 18, 21]),  # alone: no block empty
]


@pytest.mark.parametrize(("settings", "lengths"), CNN_SETTINGS,
                         ids=["-".join(f"{k}={v}" for k, v in s.items()) for s, _ in CNN_SETTINGS])
def test_cnn_over_time_gives_a_series_alone_what_it_gives_it_beside_a_much_longer_one(
    settings: dict, lengths: list[int]
) -> None:
    torch.manual_seed(0)
    net = CNN(in_channels=3, dims=1, channels=[4, 5, 6], out_features=3, activation="tanh", hidden=[4],
              dropout=0.1, **settings)
    _randomise_batch_norm(net)
    net.eval()  # batch norm then normalises each position by its running statistics, on its own
    x = _series([*lengths, 41], features=2, pad_to=41)
    x[:-1, :, :2] += 3.0 * (x[:-1, :, 2:] == 0)  # values on padded steps (mask 0) must not reach the output
    together = net(x)  # every short series padded to 41 steps
    for i, n in enumerate(lengths):
        alone = net(x[i : i + 1, :n])  # the series with no padding at all
        assert torch.allclose(together[i : i + 1], alone, rtol=0, atol=1e-5), (settings, n)
    assert together[:-1].std(dim=0).min() > 1e-3  # the outputs differ per series: the check is not vacuous


def test_cnn_and_rnn_take_series_longer_than_their_spec_was_built_for() -> None:
    for kind in ("cnn", "rnn"):
        net = build_net(net_spec(_model(kind), "sequence", (10, 3), 2)).eval()
        x = _series([60, 4], features=2, pad_to=60)
        assert net(x).shape == (2, 2), kind


@pytest.mark.parametrize(("cell", "bidirectional"), [("gru", False), ("gru", True), ("lstm", False), ("lstm", True)])
def test_rnn_gives_a_series_alone_what_it_gives_it_beside_a_much_longer_one(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    net = RNN(input_size=2, hidden_size=5, out_features=3, cell=cell, layers=2, bidirectional=bidirectional,
              hidden=[4], activation="tanh").eval()
    lengths = [3, 7, 11]
    x = _series([*lengths, 57], features=2, pad_to=57)
    together = net(x)
    for i, n in enumerate(lengths):
        assert torch.allclose(together[i : i + 1], net(x[i : i + 1, :n]), rtol=0, atol=1e-5), (cell, n)


def test_rnn_packs_each_series_by_its_length() -> None:
    torch.manual_seed(0)
    for cell in ("rnn", "lstm", "gru"):
        net = RNN(input_size=2, hidden_size=5, out_features=3, cell=cell, layers=2, bidirectional=True).eval()
        x = _series([4, 2, 6], features=2, pad_to=6)
        out = net(x)
        assert out.shape == (3, 3)
        alone = net(x[1:2, :2])  # the second series with no padding at all
        assert torch.allclose(out[1:2], alone, atol=1e-6), cell
        garbage = x.clone()
        garbage[1, 2:, :2] = 99.0  # values on padded steps must not reach the output
        assert torch.allclose(net(garbage), out, atol=1e-6), cell


def test_rnn_reads_images_row_by_row() -> None:
    net = RNN(input_size=2 * 8, hidden_size=4, out_features=10, images=True)
    assert net(torch.randn(3, 2, 5, 8)).shape == (3, 10)
    assert net.recurrent.input_size == 16


def test_unknown_cell_or_pool_is_refused() -> None:
    with pytest.raises(ValueError,
                       match=r"^model\.rnn\.cell: expected one of \('rnn', 'lstm', 'gru'\), got 'transformer'$"):
        RNN(2, 3, 2, cell="transformer")
    with pytest.raises(ValueError, match=r"^model\.cnn\.pool: expected one of \('max', 'avg', 'none'\), got 'median'$"):
        CNN(1, 2, [2], 2, pool="median")


def _model(kind: str):
    return build_params(model={"kind": kind}, data={"source": "digits", "target": "digit"}).model


@pytest.mark.parametrize(
    ("kind", "modality", "shape", "expected"),
    [
        ("fnn", "sequence", (150, 2), {"in_features": 300}),
        ("cnn", "image", (1, 8, 8), {"in_channels": 1, "dims": 2, "channels": [32, 64]}),
        ("cnn", "sequence", (150, 2), {"in_channels": 2, "dims": 1}),
        ("rnn", "sequence", (150, 3), {"input_size": 2, "images": False, "cell": "gru"}),
        ("rnn", "image", (1, 8, 8), {"input_size": 8, "images": True}),
    ],
)
def test_net_spec_fits_the_input_and_builds(kind: str, modality: str, shape: tuple, expected: dict) -> None:
    spec = net_spec(_model(kind), modality, shape, 4)
    assert spec["kind"] == kind and {k: spec[k] for k in expected} == expected
    net = build_net(spec).eval()
    x = torch.randn(2, *shape)
    if modality == "sequence":
        x[..., -1] = 1.0  # the mask: every step real
    assert net(x).shape == (2, 4)


def test_cnn_or_rnn_on_a_table_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"model.kind = 'cnn' with tabular data: expected 'fnn'"):
        net_spec(_model("cnn"), "tabular", (10,), 3)
