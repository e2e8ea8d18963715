"""Starting a network from another one's weights: which layers load, which stay frozen, and at what rate.

The rules: the architecture the new params describe must be the source's,
but for the number of outputs, the dropout rate and the initialisation of what is not loaded; every parameter and
buffer whose name and shape match is loaded; the output layer is made afresh when the number of classes or
outputs differs; any other layer whose shape differs is refused with its name and both shapes. Nothing here reads
a registry or a file: :mod:`pipeline.stages.train` hands in the source's spec and state, read through
safetensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.nets import build_net

# spec keys a fine-tuned network may set differently from its source: none of them shapes a loaded weight (the
# output width is handled by the rules above; dropout only by whether it is on, which adds layers)
FREE_KEYS = frozenset({"out_features", "init", "dropout"})
# the dense head of each kind: everything outside it is its encoder
HEADS = {"fnn": None, "cnn": "head.", "rnn": "head."}


@dataclass(frozen=True)
class Parent:
    """The network a training starts from (``train.init_from``), as read from its bundle.

    Attributes:
        uri: The version it is, by number (``models:/digits-cnn/3``): what messages name.
        spec: Its architecture spec (``net.json``).
        state: Its parameters and buffers by name.
        digest: A SHA-256 of ``state``: a checkpoint is resumed only from the same parent's training.
    """

    uri: str
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        for name in sorted(self.state):
            tensor = self.state[name].detach().cpu().contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        object.__setattr__(self, "digest", digest.hexdigest())


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_matching` did.

    Attributes:
        loaded: Names of the parameters and buffers taken from the source, in the network's order.
        fresh: Names kept as initialised: the output layer's when the number of outputs differs, else none.
        note: One line for the log when the output layer was made afresh, else ``None``.
    """

    loaded: tuple[str, ...]
    fresh: tuple[str, ...]
    note: str | None


@dataclass(frozen=True)
class Finetune:
    """How a network started from a source trains (``train.freeze``, ``unfreeze_epoch``, ``loaded_lr_factor``).

    Attributes:
        loaded: Names of the parameters taken from the source (:attr:`Loaded.loaded`).
        frozen: Prefixes of the parameters held fixed (:func:`frozen_prefixes`).
        unfreeze_epoch: The epoch from which the frozen ones train too; ``None``: never.
        loaded_lr_factor: The loaded parameters' rate as a fraction of ``train.lr``.
    """

    loaded: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    unfreeze_epoch: int | None = None
    loaded_lr_factor: float = 1.0

    def frozen_at(self, epoch: int) -> bool:
        """Whether :attr:`frozen` is held during ``epoch`` (counted from 0)."""
        return bool(self.frozen) and (self.unfreeze_epoch is None or epoch < self.unfreeze_epoch)


def first_difference(source: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The first architecture key (in the target spec's order) on which ``source`` and ``target`` disagree,
    as ``<key>: source X, params.yaml Y`` (a key of ``model``); ``None`` when the target describes the source."""
    for spec, side in ((source, "source"), (target, "params.yaml")):
        if spec.get("kind") == "ensemble":
            return f"ensemble: the {side} is an ensemble; expected a single network to start from"
    keys = [k for k in target if k not in FREE_KEYS] + [k for k in source if k not in target and k not in FREE_KEYS]
    for key in keys:
        if source.get(key) != target.get(key):
            return f"{key}: source {source.get(key)!r}, params.yaml {target.get(key)!r}"
    if (source.get("dropout", 0) > 0) != (target.get("dropout", 0) > 0):  # dropout layers shift the FNN's names
        return f"dropout: source {source.get('dropout')!r}, params.yaml {target.get('dropout')!r} (on in one, off in " \
               "the other: the layers are numbered differently)"
    return None


def start_from(net: nn.Module, spec: dict[str, Any], parent: Parent, freeze: str | Sequence[str],
               unfreeze_epoch: int | None, loaded_lr_factor: float) -> Finetune:
    """Load ``parent`` into the freshly built ``net`` (of ``spec``) and say how it trains: the loaded parameters,
    the prefixes ``freeze`` holds (see :func:`frozen_prefixes`), until when, and at what share of the rate.

    Raises:
        PipelineError: As :func:`load_matching` and :func:`frozen_prefixes` do.
    """
    loaded = load_matching(net, parent.spec, spec, parent.state, parent.uri)
    if loaded.note is not None:
        print(f"train: {loaded.note}", flush=True)
    parameters = {name for name, _ in net.named_parameters()}
    return Finetune(tuple(name for name in loaded.loaded if name in parameters),
                    frozen_prefixes(net, spec["kind"], freeze), unfreeze_epoch, loaded_lr_factor)


def output_layer(net: nn.Module) -> str:
    """The name prefix of ``net``'s output layer (its last linear layer), e.g. ``head.6.``."""
    names = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise PipelineError(f"{type(net).__name__}: expected a linear output layer to fine-tune, found none")
    return f"{names[-1]}."


def check(parent: Parent, spec: dict[str, Any]) -> None:
    """Refuse, before anything is trained or tracked, a ``parent`` that cannot start a network of ``spec``: the
    rules of :func:`load_matching`, applied to a network built on the meta device (no memory, no draw from the
    RNG, so the training that follows starts from the same seed's weights).

    Raises:
        PipelineError: As :func:`load_matching` does.
    """
    with torch.device("meta"):
        net = build_net(spec)
    plan(net, parent.spec, spec, parent.state, parent.uri)


def load_matching(net: nn.Module, source_spec: dict[str, Any], target_spec: dict[str, Any],
                  state: dict[str, torch.Tensor], source: str) -> Loaded:
    """Load ``state`` (the source network's parameters and buffers) into ``net`` by the rules above.

    Args:
        net: The freshly built and initialised network of ``target_spec``; changed in place.
        source_spec: The architecture spec saved with the source's weights.
        target_spec: The spec ``net`` was built from.
        state: The source's tensors by name.
        source: How to name the source in messages (``models:/penguins/3``).

    Raises:
        PipelineError: If the architectures differ, a layer's shape differs (other than the output layer's for a
            different number of outputs), or the source lacks a layer ``net`` has.
    """
    loaded = plan(net, source_spec, target_spec, state, source)
    own = net.state_dict()
    with torch.no_grad():
        for name in loaded.loaded:
            own[name].copy_(state[name])
    return loaded


def plan(net: nn.Module, source_spec: dict[str, Any], target_spec: dict[str, Any],
         state: dict[str, torch.Tensor], source: str) -> Loaded:
    """What :func:`load_matching` would load into ``net`` and what it would leave fresh; ``net`` is only read.

    Raises:
        PipelineError: As :func:`load_matching` does.
    """
    difference = first_difference(source_spec, target_spec)
    if difference is not None:
        raise PipelineError(f"train.init_from = {source}: model.{difference}; expected params.yaml to describe "
                            "the source's architecture")
    outputs_differ = source_spec.get("out_features") != target_spec.get("out_features")
    head = output_layer(net)
    loaded, fresh = [], []
    for name, tensor in net.state_dict().items():
        if outputs_differ and name.startswith(head):
            fresh.append(name)
            continue
        if name not in state:
            raise PipelineError(f"train.init_from = {source}: layer {name} is missing from the source; expected "
                                "every layer of the architecture")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise PipelineError(f"train.init_from = {source}: layer {name} has shape {tuple(state[name].shape)} in "
                                f"the source, {tuple(tensor.shape)} here; expected the same shape")
        loaded.append(name)
    note = None
    if outputs_differ:
        note = (f"train.init_from = {source}: output layer {head.rstrip('.')} made afresh "
                f"({source_spec.get('out_features')} outputs in the source, {target_spec.get('out_features')} here)")
    return Loaded(tuple(loaded), tuple(fresh), note)


def frozen_prefixes(net: nn.Module, kind: str, freeze: str | Sequence[str]) -> tuple[str, ...]:
    """The parameter-name prefixes ``train.freeze`` holds fixed in ``net`` (of ``model.kind`` ``kind``).

    ``none`` freezes nothing; ``encoder`` everything but the dense head: a CNN's convolutions, an RNN's recurrent
    layers, and for an FNN (all dense head) every layer but its output layer; a list names prefixes, each of which
    must match some parameter.

    Raises:
        PipelineError: If a listed prefix matches no parameter of ``net``.
    """
    names = [name for name, _ in net.named_parameters()]
    if freeze == "none":
        return ()
    if freeze == "encoder":
        keep = HEADS[kind] or output_layer(net)
        return tuple(dict.fromkeys(name if HEADS[kind] is None else f"{name.split('.')[0]}."
                                   for name in names if not name.startswith(keep)))
    prefixes = tuple(freeze)
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise PipelineError(f"train.freeze: {prefix!r} names no layer of the {kind} network; expected a prefix "
                                f"of its parameter names, e.g. {names[0]!r}")
    return prefixes


def under(name: str, prefixes: Sequence[str]) -> bool:
    """Whether parameter ``name`` falls under one of ``prefixes``."""
    return any(name.startswith(prefix) for prefix in prefixes)


def set_frozen(net: nn.Module, prefixes: Sequence[str], frozen: bool = True) -> None:
    """Stop (or, with ``frozen=False``, restore) gradients to the parameters under ``prefixes``. A parameter
    without a gradient is skipped whole by every optimizer here, weight decay included: it stays bit-identical."""
    for name, parameter in net.named_parameters():
        if under(name, prefixes):
            parameter.requires_grad_(not frozen)


def hold_norm_statistics(net: nn.Module, prefixes: Sequence[str]) -> None:
    """Put the batch-norm layers under ``prefixes`` in evaluation mode, so their running mean and variance stay
    the source's. Call it after every ``net.train()`` (Lightning calls that at each epoch's start)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and _norm_under(name, prefixes):
            module.eval()


def release(net: nn.Module, prefixes: Sequence[str], optimizer: torch.optim.Optimizer) -> None:
    """``train.unfreeze_epoch`` reached: the parameters under ``prefixes`` train from now on, and their batch
    norms learn their statistics again. A momentum optimizer gets a zero buffer for each released parameter: the
    first step is then what PyTorch's own first step takes (the gradient itself), and the fused kernel, which needs
    every parameter's buffer once any has one, can step them with the rest."""
    set_frozen(net, prefixes, frozen=False)
    for name, module in net.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and _norm_under(name, prefixes):
            module.train(net.training)
    for group in optimizer.param_groups:
        if group.get("momentum", 0) > 0 and "betas" not in group:  # SGD and Nesterov (RMSprop keeps its own)
            for parameter in group["params"]:
                optimizer.state[parameter].setdefault("momentum_buffer", torch.zeros_like(parameter))


def _norm_under(name: str, prefixes: Sequence[str]) -> bool:
    """Whether module ``name`` lies under a prefix, or a prefix names one of its parameters."""
    return any(f"{name}.".startswith(prefix) or prefix.startswith(f"{name}.") for prefix in prefixes)


def param_groups(net: nn.Module, loaded: Sequence[str], lr: float, loaded_lr_factor: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    """The optimizer's groups: new and loaded parameters apart, the loaded ones at ``lr * loaded_lr_factor``;
    in each, the weights of linear, conv and recurrent layers decayed and the rest (biases, norm scales) not, as
    :func:`pipeline.training.module.penalised` chooses them. Frozen parameters are in their groups from the start
    (a learning-rate schedule sees every group it will ever step) and move once they are released."""
    chosen = set(loaded)
    groups = []
    for is_loaded, rate in ((False, lr), (True, lr * loaded_lr_factor)):
        members = [(n, p) for n, p in net.named_parameters() if (n in chosen) == is_loaded]
        weights = [p for n, p in members if "weight" in n and p.dim() > 1]
        rest = [p for n, p in members if not ("weight" in n and p.dim() > 1)]
        groups += [{"params": params, "lr": rate, "weight_decay": decay}
                   for params, decay in ((weights, weight_decay), (rest, 0.0)) if params]
    return groups
