"""The learning-rate range test: a plausible suggestion, no side effects, early stops, the plot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.training.lr_find import LRFinding, find_lr, lr_find_png


def _blobs(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in 2-D, one per class: learnable, but not in one step."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
    y = torch.randint(0, 3, (n,), generator=generator)
    return centers[y] + torch.randn(n, 2, generator=generator), y


def _mlp(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def _adam(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters())


def _sgd(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def _nan_after(calls: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy for the first ``calls`` batches, NaN from then on."""
    seen = []

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(1)
        value = F.cross_entropy(out, y)
        return value if len(seen) <= calls else value * float("nan")

    return loss


def test_the_suggestion_is_a_plausible_rate_inside_the_range() -> None:
    x, y = _blobs()
    finding = find_lr(_mlp(), F.cross_entropy, _sgd, x, y, batch_size=32, seed=0)
    assert len(finding.lrs) == len(finding.losses) == 100  # no divergence up to lr 1 on this problem
    assert finding.lrs[0] == pytest.approx(1e-6) and finding.lrs[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(finding.lrs, finding.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))  # exponential growth
    assert finding.suggestion in finding.lrs
    # SGD with momentum 0.9 on these blobs learns fastest around 1e-2: far from either end of the range
    assert 1e-3 < finding.suggestion < 0.3
    assert min(finding.losses) < 0.75 * finding.losses[0]  # the copy really trained


def test_adam_gets_a_plausible_suggestion_too() -> None:
    x, y = _blobs()
    finding = find_lr(_mlp(), F.cross_entropy, _adam, x, y, batch_size=32, seed=0)
    assert 1e-3 < finding.suggestion < 0.5


def test_neither_the_network_nor_the_global_rng_changes() -> None:
    x, y = _blobs()
    net = _mlp(dropout=0.3).eval()  # dropout: the copy draws from the global RNG while it trains
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    find_lr(net, F.cross_entropy, _sgd, x, y, batch_size=32, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert weights.keys() == net.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    assert not net.training  # its mode is left alone too


def test_the_same_seed_gives_the_same_finding() -> None:
    x, y = _blobs()
    first = find_lr(_mlp(dropout=0.3), F.cross_entropy, _sgd, x, y, batch_size=32, seed=5)
    torch.manual_seed(999)  # a different global state does not matter: the seed drives batches and dropout
    second = find_lr(_mlp(dropout=0.3), F.cross_entropy, _sgd, x, y, batch_size=32, seed=5)
    other = find_lr(_mlp(dropout=0.3), F.cross_entropy, _sgd, x, y, batch_size=32, seed=6)
    assert first == second
    assert first.losses != other.losses


def test_a_diverging_loss_stops_the_test_early() -> None:
    x, y = _blobs()
    finding = find_lr(_mlp(), F.cross_entropy, _sgd, x, y, batch_size=32, seed=0, end=1e6)
    assert 10 <= len(finding.lrs) < 100
    assert finding.losses[-1] > 4 * min(finding.losses)  # it stopped because it diverged
    assert finding.suggestion < finding.lrs[-1]


def test_a_non_finite_loss_ends_the_test_and_the_steps_before_it_count() -> None:
    x, y = _blobs()
    finding = find_lr(_mlp(), _nan_after(30), _sgd, x, y, batch_size=32, seed=0)
    assert len(finding.lrs) == 30
    assert all(loss == loss for loss in finding.losses)  # no NaN recorded


def test_batches_larger_than_the_data_use_all_rows() -> None:
    x, y = _blobs(n=20)
    finding = find_lr(_mlp(), F.cross_entropy, _sgd, x, y, batch_size=64, seed=0, steps=30)
    assert len(finding.lrs) == 30


@pytest.mark.parametrize(
    ("nan_after", "kwargs", "message"),
    [
        (4, {}, r"^lr_find: expected at least 10 steps .* got 4 .*lower start .* or end .* raise steps"),
        (None, {"steps": 5}, r"^lr_find: steps: expected at least 10 to suggest a rate, got 5"),
        (None, {"start": 1.0, "end": 1e-3}, r"^lr_find: start, end: expected 0 < start < end"),
        (None, {"batch_size": 0}, r"^lr_find: batch_size: expected an integer >= 1, got 0"),
    ],
)
def test_too_few_points_or_bad_arguments_raise(nan_after: int | None, kwargs: dict, message: str) -> None:
    x, y = _blobs(n=64)
    loss_fn = F.cross_entropy if nan_after is None else _nan_after(nan_after)
    args = {"batch_size": 16, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        find_lr(_mlp(), loss_fn, _sgd, x, y, **args)


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    lrs = [1e-6 * 10 ** (k / 10) for k in range(61)]
    finding = LRFinding(lrs=lrs, losses=[1.0 / (1 + k / 10) for k in range(61)], suggestion=lrs[30])
    path = tmp_path / "plots" / "lr_find.png"
    lr_find_png(path, finding, current_lr=1e-3, title="lr range test")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5_000
    assert [p.name for p in path.parent.iterdir()] == ["lr_find.png"]  # no temporary file left behind


def test_each_group_keeps_its_share_of_the_rate_and_held_layers_stay_put() -> None:
    """A fine-tuning's optimizer: loaded layers at a tenth of the rate; the first layer frozen by ``hold``."""
    x, y = _blobs()
    made: list[tuple[nn.Module, torch.optim.Optimizer]] = []

    def two_rates(net: nn.Module) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD([{"params": net[0].parameters(), "lr": 0.01},
                                     {"params": net[3].parameters(), "lr": 0.1}], lr=0.1)
        made.append((net, optimizer))
        return optimizer

    def hold(net: nn.Module) -> None:
        net[0].requires_grad_(False)

    net = _mlp()
    finding = find_lr(net, F.cross_entropy, two_rates, x, y, batch_size=32, seed=0, end=0.1, hold=hold)
    trial, optimizer = made[0]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([finding.lrs[-1] / 10, finding.lrs[-1]])
    assert torch.equal(trial[0].weight, net[0].weight) and not torch.equal(trial[3].weight, net[3].weight)
