"""Loading a source network's weights, freezing what it learned and training the rest (pipeline.training.transfer)."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.nets import build_net
from tests.training.lit import lit_model
from pipeline.training.callbacks import FrozenLayers
from pipeline.training.data import EpochPasses
from pipeline.training.transfer import (
    Finetune, Parent, check, frozen_prefixes, hold_norm_statistics, load_matching, output_layer, param_groups, set_frozen,
)

CNN = {"kind": "cnn", "in_channels": 1, "dims": 2, "channels": [4, 8], "kernel": 3, "stride": 1, "padding": 1,
       "pool": "max", "batch_norm": True, "out_features": 10, "hidden": [16], "activation": "relu", "dropout": 0.0,
       "bias": True, "norm": "none", "init": "default"}
FNN = {"kind": "fnn", "in_features": 4, "out_features": 3, "hidden": [8, 8], "activation": "relu", "dropout": 0.1,
       "bias": True, "norm": "batch", "init": "default"}
RNN = {"kind": "rnn", "input_size": 2, "hidden_size": 8, "cell": "gru", "layers": 1, "bidirectional": False,
       "images": False, "out_features": 2, "hidden": [], "activation": "tanh", "dropout": 0.0, "bias": True,
       "norm": "none", "init": "default"}


def trained(spec: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """A source's state: a network of ``spec`` with every tensor, buffers too, set to seeded random values."""
    torch.manual_seed(seed)
    net = build_net(spec)
    return {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v + 7
            for k, v in net.state_dict().items()}


def fresh(spec: dict[str, Any], seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return build_net(spec)


@pytest.mark.parametrize("spec", [CNN, FNN, RNN], ids=["cnn", "fnn", "rnn"])
def test_the_same_architecture_loads_every_parameter_and_buffer(spec: dict[str, Any]) -> None:
    state = trained(spec)
    net = fresh(spec)
    done = load_matching(net, spec, spec, state, "models:/digits/1")
    assert done.fresh == () and done.note is None
    assert list(done.loaded) == list(net.state_dict())
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in state)


def test_a_different_number_of_classes_makes_the_output_layer_afresh_and_says_so() -> None:
    state = trained(CNN)
    target = {**CNN, "out_features": 2}
    net = fresh(target)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    done = load_matching(net, CNN, target, state, "models:/digits/1")
    assert done.fresh == ("head.2.weight", "head.2.bias")
    assert all(torch.equal(net.state_dict()[k], before[k]) for k in done.fresh)  # its own initialisation
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in done.loaded)
    assert "head.0.weight" in done.loaded and "features.1.running_mean" in done.loaded
    assert done.note == ("train.init_from = models:/digits/1: output layer head.2 made afresh (10 outputs in the "
                         "source, 2 here)")


@pytest.mark.parametrize(("change", "message"), [
    ({"channels": [4, 16]}, "model.channels: source [4, 8], params.yaml [4, 16]"),
    ({"in_channels": 3}, "model.in_channels: source 1, params.yaml 3"),
    ({"activation": "tanh"}, "model.activation: source 'relu', params.yaml 'tanh'"),
    ({"dropout": 0.2}, "model.dropout: source 0.0, params.yaml 0.2 (on in one, off in the other"),
])
def test_an_architecture_params_yaml_does_not_share_is_refused_naming_the_first_difference(
        change: dict[str, Any], message: str) -> None:
    target = {**CNN, **change}
    with pytest.raises(PipelineError) as error:
        load_matching(fresh(target), CNN, target, trained(CNN), "models:/digits/1")
    assert str(error.value).startswith(f"train.init_from = models:/digits/1: {message}")


def test_dropout_rate_and_initialisation_may_differ() -> None:
    target = {**FNN, "dropout": 0.4, "init": "kaiming_normal"}
    done = load_matching(fresh(target), FNN, target, trained(FNN), "models:/penguins/2")
    assert done.fresh == ()


def test_a_layer_whose_shape_differs_is_refused_with_both_shapes() -> None:
    state = trained(CNN)
    state["features.4.weight"] = torch.zeros(8, 4, 5, 5)  # a source whose spec says otherwise: refused, not reshaped
    with pytest.raises(PipelineError, match=r"^train.init_from = src: layer features.4.weight has shape "
                                            r"\(8, 4, 5, 5\) in the source, \(8, 4, 3, 3\) here; expected the same"):
        load_matching(fresh(CNN), CNN, CNN, state, "src")
    del state["features.4.weight"]
    with pytest.raises(PipelineError, match="^train.init_from = src: layer features.4.weight is missing"):
        load_matching(fresh(CNN), CNN, CNN, state, "src")


def test_check_refuses_before_training_and_leaves_the_seeded_draw_alone() -> None:
    parent = Parent("models:/digits/1", CNN, trained(CNN))
    wrong = Parent("models:/digits/2", CNN, {**trained(CNN), "head.0.weight": torch.zeros(16, 3)})
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    check(parent, {**CNN, "out_features": 2})  # a new head is no refusal
    with pytest.raises(PipelineError, match=r"^train.init_from = models:/digits/1: model.kernel: source 3, "
                                            r"params.yaml 5; expected params.yaml to describe"):
        check(parent, {**CNN, "kernel": 5})
    with pytest.raises(PipelineError, match=r"layer head.0.weight has shape \(16, 3\) in the source, \(16, 8\) here"):
        check(wrong, CNN)
    assert torch.equal(torch.random.get_rng_state(), state)  # the training that follows draws what it would have


def test_an_ensemble_is_no_source() -> None:
    ensemble = {"kind": "ensemble", "member": CNN, "size": 3}
    with pytest.raises(PipelineError, match=r"^train.init_from = models:/digits/4: model.ensemble: the source is an "
                                            r"ensemble; expected a single network"):
        load_matching(fresh(CNN), ensemble, CNN, {}, "models:/digits/4")


def test_the_encoder_is_all_but_the_dense_head() -> None:
    assert frozen_prefixes(fresh(CNN), "cnn", "encoder") == ("features.",)
    assert frozen_prefixes(fresh(RNN), "rnn", "encoder") == ("recurrent.",)
    fnn = fresh(FNN)
    assert output_layer(fnn) == "layers.8."
    assert frozen_prefixes(fnn, "fnn", "encoder") == tuple(
        name for name, _ in fnn.named_parameters() if not name.startswith("layers.8."))
    assert frozen_prefixes(fnn, "fnn", "none") == ()
    assert frozen_prefixes(fresh(CNN), "cnn", ["features.0.", "head.0."]) == ("features.0.", "head.0.")
    with pytest.raises(PipelineError, match=r"^train.freeze: 'encoder.' names no layer of the cnn network; "
                                            r"expected a prefix of its parameter names, e.g. 'features.0.weight'"):
        frozen_prefixes(fresh(CNN), "cnn", ["encoder."])


def _steps(net: nn.Module, optimizer: torch.optim.Optimizer, prefixes: tuple[str, ...], n: int) -> None:
    """``n`` training steps on random images, the frozen batch norms held as a training epoch holds them."""
    for step in range(n):
        net.train()
        hold_norm_statistics(net, prefixes)
        x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 2, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("kind", ["adamw", "adamw_fused", "sgd"])  # fused: the kernel train uses
def test_frozen_weights_and_batch_norm_statistics_stay_bit_identical_until_released(kind: str) -> None:
    target = {**CNN, "out_features": 2}
    net = fresh(target)
    done = load_matching(net, CNN, target, trained(CNN), "src")
    prefixes = frozen_prefixes(net, "cnn", "encoder")
    set_frozen(net, prefixes)
    groups = param_groups(net, done.loaded, lr=0.05, loaded_lr_factor=0.1, weight_decay=0.5)
    if kind == "sgd":
        optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(groups, lr=0.05, fused=kind == "adamw_fused")
    encoder = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("features.")}
    head = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("head.")}
    _steps(net, optimizer, prefixes, 5)
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder.items())  # weights, running mean and variance, count
    assert all(not torch.equal(after[k], v) for k, v in head.items())  # loaded dense layer and new output layer
    set_frozen(net, prefixes, frozen=False)  # train.unfreeze_epoch reached
    _steps(net, optimizer, (), 1)
    assert not torch.equal(net.state_dict()["features.0.weight"], encoder["features.0.weight"])
    assert not torch.equal(net.state_dict()["features.1.running_mean"], encoder["features.1.running_mean"])


def test_loaded_layers_learn_at_their_own_rate_and_only_weights_decay() -> None:
    target = {**CNN, "out_features": 2}
    net = fresh(target)
    done = load_matching(net, CNN, target, trained(CNN), "src")
    groups = param_groups(net, done.loaded, lr=0.05, loaded_lr_factor=0.1, weight_decay=0.5)
    names = {id(p): n for n, p in net.named_parameters()}
    summary = [(g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in groups]
    assert summary == [
        (0.05, 0.5, ["head.2.weight"]), (0.05, 0.0, ["head.2.bias"]),
        (pytest.approx(0.005), 0.5, ["features.0.weight", "features.4.weight", "head.0.weight"]),
        (pytest.approx(0.005), 0.0, ["features.1.bias", "features.1.weight", "features.5.bias", "features.5.weight",
                                     "head.0.bias"]),
    ]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


class _Snapshots(L.Callback):
    """The network's tensors after each training epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_lightning_training_holds_the_encoder_until_unfreeze_epoch_and_steps_loaded_layers_slower(
        optimizer: str) -> None:
    target = {**CNN, "out_features": 2}
    net = fresh(target)
    done = load_matching(net, CNN, target, trained(CNN), "src")
    finetune = Finetune(done.loaded, frozen_prefixes(net, "cnn", "encoder"), unfreeze_epoch=2, loaded_lr_factor=0.25)
    module = lit_model(net, lr=0.01, rows_per_step=8, modality="image", optimizer=optimizer, weight_decay=0.1,
                       **({"momentum": 0.9} if optimizer == "sgd" else {}))
    module.finetune = finetune
    assert [g["lr"] for g in module.make_optimizer(net).param_groups] == [0.01, 0.01, 0.0025, 0.0025]
    start = {k: v.clone() for k, v in net.state_dict().items()}
    snapshots = _Snapshots()
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 2, (32,))
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[FrozenLayers(finetune), snapshots])
    trainer.fit(module, train_dataloaders=EpochPasses(x, y, 0, torch.device("cpu")))
    encoder = [k for k in start if k.startswith("features.")]  # conv and batch-norm weights, statistics, count
    for epoch in (0, 1):
        assert [k for k in encoder if not torch.equal(snapshots.states[epoch][k], start[k])] == [], epoch
        assert not torch.equal(snapshots.states[epoch]["head.0.weight"], start["head.0.weight"])
    released = snapshots.states[2]
    assert [k for k in encoder if torch.equal(released[k], start[k])] == []
