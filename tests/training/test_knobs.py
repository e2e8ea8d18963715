"""Every training knob reaches the network, the optimizer or the loss: checked on the objects, not the params."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import parse_params
from pipeline.nets import build_net
from pipeline.training.module import LitModel
from tests.factories import MakeParams, MakeParamsDoc
from tests.training.lit import lit_model


def _fnn(**extra: object) -> nn.Module:
    torch.manual_seed(0)
    spec = {"kind": "fnn", "in_features": 400, "hidden": [300], "out_features": 3, "activation": "relu",
            "dropout": 0.0, **extra}
    return build_net(spec)


def _module(net: nn.Module | None = None, **kwargs: object) -> LitModel:
    return lit_model(net or _fnn(), **{"optimizer": "adam", "lr": 0.01, "momentum": 0.0, **kwargs})


@pytest.mark.parametrize(
    ("name", "momentum", "cls", "expected"),
    [
        ("sgd", 0.5, torch.optim.SGD, {"momentum": 0.5, "nesterov": False, "fused": True}),
        ("nesterov", 0.9, torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "fused": True}),
        ("adam", 0.0, torch.optim.Adam, {"fused": True}),  # one kernel for all parameters: a small net's step
        ("adamw", 0.0, torch.optim.AdamW, {"fused": True}),
        ("rmsprop", 0.3, torch.optim.RMSprop, {"momentum": 0.3}),  # PyTorch has no fused RMSprop
    ],
)
def test_optimizer_and_its_hyperparameters(name: str, momentum: float, cls: type, expected: dict) -> None:
    optimizer = _module(optimizer=name, lr=0.05, momentum=momentum, weight_decay=0.02).configure_optimizers()
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.02
    assert {k: group[k] for k in expected} == expected


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_weight_decay_shrinks_weights_but_not_biases_or_norm_scales(name: str) -> None:
    net = _fnn(norm="batch")
    module = _module(net, optimizer=name, lr=1e-4, weight_decay=0.5)  # small steps: adaptive ones do not overshoot 0
    optimizer = module.configure_optimizers()
    before = {k: v.clone() for k, v in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # no loss gradient: only the penalty can move a parameter
    optimizer.step()
    moved = {k for k, v in net.named_parameters() if not torch.equal(v, before[k])}
    # the two linear layers' weights; layers.1 is the batch norm, whose scale is also called 'weight'
    assert moved == {"layers.0.weight", "layers.3.weight"}
    for k in moved:  # towards zero, never away
        assert net.get_parameter(k).abs().sum() < before[k].abs().sum()


def test_xavier_uniform_draws_within_glorots_bound_and_zeroes_biases() -> None:
    net = _fnn(init="xavier_uniform")
    first = net.layers[0]
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (400 + 300))  # ReLU gain
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(first.bias) == 0


def test_kaiming_normal_has_he_spread() -> None:
    weight = _fnn(init="kaiming_normal").layers[0].weight
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / 400), rel=0.03)
    default = _fnn().layers[0].weight  # PyTorch's default: uniform, std 1/sqrt(3 * fan_in)
    assert default.std().item() == pytest.approx(1 / math.sqrt(3 * 400), rel=0.03)


def test_orthogonal_weights_and_recurrent_weights() -> None:
    weight = _fnn(init="orthogonal").layers[0].weight  # (300, 400): orthonormal rows, scaled by the ReLU gain
    gram = weight @ weight.T / 2.0
    assert torch.allclose(gram, torch.eye(300), atol=1e-4)
    torch.manual_seed(0)
    rnn = build_net({"kind": "rnn", "input_size": 4, "hidden_size": 8, "out_features": 2, "cell": "lstm",
                     "init": "xavier_uniform"})
    hh = rnn.recurrent.weight_hh_l0  # 4 gates of (8, 8), each orthogonal
    for gate in hh.chunk(4):
        assert torch.allclose(gate @ gate.T, torch.eye(8), atol=1e-5)
    assert torch.count_nonzero(rnn.recurrent.bias_ih_l0) == 0


def test_bias_off_and_new_activations_reach_every_net() -> None:
    for spec in (
        {"kind": "fnn", "in_features": 4, "hidden": [3], "out_features": 2, "activation": "gelu"},
        {"kind": "cnn", "in_channels": 1, "dims": 2, "channels": [2], "out_features": 2, "batch_norm": False,
         "activation": "elu"},
        {"kind": "rnn", "input_size": 4, "hidden_size": 3, "out_features": 2, "hidden": [5], "activation": "elu"},
    ):
        net = build_net({**spec, "bias": False})
        assert not [name for name, _ in net.named_parameters() if "bias" in name], spec["kind"]
        wanted = nn.GELU if spec["activation"] == "gelu" else nn.ELU
        assert any(isinstance(m, wanted) for m in net.modules()), spec["kind"]


def test_l1_penalty_sums_absolute_weights_but_not_biases() -> None:
    net = _fnn()
    module = _module(net, l1=0.01)
    weights = net.layers[0].weight.abs().sum() + net.layers[2].weight.abs().sum()
    assert torch.allclose(module._penalty(), 0.01 * weights)
    assert _module(net, l1=0.0)._penalty() == 0.0


def _one_epoch(module: LitModel, x: torch.Tensor, y: torch.Tensor) -> None:
    module.log_dict = module.log = lambda *a, **k: None  # logging needs a Trainer; the loop does not
    if not hasattr(module, "_optimizer"):
        module._optimizer = module.configure_optimizers()
        module.optimizers = lambda: SimpleNamespace(optimizer=module._optimizer)
    module.training_step((x, y, torch.arange(len(y))), 0)


def _lrs(schedule: dict, epochs: int, val_losses: list[float] | None = None) -> list[float]:
    """The learning rate each epoch trains with, as the module logs it; 8 rows in batches of 4 (two steps)."""
    torch.manual_seed(0)
    module = _module(_fnn(), optimizer="sgd", lr=0.1, rows_per_step=4, max_epochs=epochs,
                     schedule={"step_size": 2, "gamma": 0.5, "patience": 1, "warmup_epochs": 0, **schedule})
    x, y = torch.randn(8, 400), torch.randint(0, 3, (8,))
    logged: list[float] = []
    module.log_dict = module.log = lambda *a, **k: None  # logging needs a Trainer; the figures do not
    optimizer = module.configure_optimizers()
    module.optimizers = lambda: SimpleNamespace(optimizer=optimizer)
    for epoch in range(epochs):
        module.training_step((x, y, torch.arange(len(y))), 0)
        logged.append(float(module.figures["lr"]))  # what the epoch history records
        if val_losses is not None:
            module._val_loss = torch.tensor(val_losses[epoch])
            module.on_validation_epoch_end()
    return logged


def test_step_schedule_decays_every_step_size_epochs() -> None:
    assert _lrs({"kind": "step"}, 6) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_warmup_ramps_linearly_then_hands_over() -> None:
    assert _lrs({"kind": "step", "warmup_epochs": 3, "step_size": 100}, 5) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_cosine_falls_to_zero_at_max_epochs() -> None:
    lrs = _lrs({"kind": "cosine"}, 4)
    assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


def test_onecycle_rises_to_lr_and_falls_within_training() -> None:
    lrs = _lrs({"kind": "onecycle"}, 10)
    assert lrs[0] < 0.01 and max(lrs) > 0.09 and lrs[-1] < 0.02  # starts low (lr/25), peaks near lr, ends low
    assert lrs.index(max(lrs)) in (2, 3)  # the peak comes at 30% of the steps


def test_plateau_decays_after_patience_epochs_without_improvement() -> None:
    lrs = _lrs({"kind": "plateau"}, 6, val_losses=[1.0, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_warmup_with_onecycle_is_refused(make_params_doc: MakeParamsDoc) -> None:
    from pipeline.errors import PipelineError

    raw = make_params_doc(train={"schedule": {"kind": "onecycle", "warmup_epochs": 2}})
    with pytest.raises(PipelineError, match=r"train.schedule.warmup_epochs = 2 with train.schedule.kind = 'onecycle'"):
        parse_params(raw)


def test_l1_shrinks_weights_during_training() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(64, 400), torch.randint(0, 3, (64,))
    plain = _module(_fnn(), optimizer="sgd", lr=0.05, rows_per_step=4)
    sparse = _module(_fnn(), optimizer="sgd", lr=0.05, rows_per_step=4, l1=0.05)  # 16 steps of 0.0025 towards 0
    _one_epoch(plain, x, y)
    _one_epoch(sparse, x, y)
    assert sparse.net.layers[0].weight.abs().sum() < 0.9 * plain.net.layers[0].weight.abs().sum()


@pytest.mark.parametrize(("mode", "limit"), [("norm", 0.01), ("value", 0.001)])
def test_gradient_clipping_bounds_the_gradients_the_optimizer_sees(mode: str, limit: float) -> None:
    module = _module(gradient_clip={"mode": mode, "max": limit})
    x, y = torch.randn(16, 400) * 50, torch.randint(0, 3, (16,))
    F.cross_entropy(module.net(x), y).backward()
    grads = [p.grad for p in module.net.parameters()]
    before = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert before > limit * 10  # large enough that clipping has something to do
    module._clip()
    if mode == "norm":
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in module.net.parameters()]))
        assert total <= limit * 1.0001
    else:
        assert max(p.grad.abs().max() for p in module.net.parameters()) <= limit


def test_label_smoothing_and_regression_losses_are_the_ones_asked_for() -> None:
    out, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert torch.allclose(_module(label_smoothing=0.2)._loss(out, y), F.cross_entropy(out, y, label_smoothing=0.2))
    assert not torch.allclose(_module()._loss(out, y), F.cross_entropy(out, y, label_smoothing=0.2))
    pred, target = torch.randn(8, 1) * 3, torch.randn(8)
    for name, fn in (("mse", F.mse_loss), ("mae", F.l1_loss), ("huber", F.huber_loss)):
        module = _module(task="regression", regression_loss=name)
        assert torch.allclose(module._loss(pred, target), fn(pred[:, 0], target)), name


@pytest.mark.parametrize(("update", "expected"), [("mini_batch", 32), ("full_batch", 500), ("stochastic", 1)])
def test_update_mode_sets_rows_per_optimizer_step(update: str, expected: int, make_params: MakeParams) -> None:
    assert make_params(train={"update": update}).train.rows_per_step(500) == expected


def test_validation_judges_the_prior_corrected_logits_with_an_unweighted_loss() -> None:
    import torch
    from torch.nn import functional as F

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    offsets = [0.7, -2.5]
    plain = lit_model(net, class_weight=[0.6, 3.0])
    corrected = lit_model(net, class_weight=[0.6, 3.0], val_offsets=offsets)
    for module in (plain, corrected):
        module._log_epoch = lambda *args: None  # no trainer to log to: only the returned loss is compared
    with torch.no_grad():
        out = net(x)
        assert torch.allclose(plain._evaluate((x, y), "val"), F.cross_entropy(out, y, weight=torch.tensor([0.6, 3.0])))
        assert torch.allclose(corrected._evaluate((x, y), "val"), F.cross_entropy(out + torch.tensor(offsets), y))


def test_every_optimizer_schedule_and_loss_the_schema_admits_has_a_builder() -> None:
    """The dispatch tables cover exactly the schema's values, so a lookup after validation cannot miss."""
    from typing import get_args

    from pipeline.config.training import Optimizer, RegressionLoss, ScheduleKind
    from pipeline.training.module import OPTIMIZERS, REGRESSION_LOSSES, SCHEDULES

    assert set(OPTIMIZERS) == set(get_args(Optimizer))
    assert set(SCHEDULES) | {"none"} == set(get_args(ScheduleKind))
    assert set(REGRESSION_LOSSES) == set(get_args(RegressionLoss))
