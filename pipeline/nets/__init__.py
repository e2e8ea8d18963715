"""Network architectures as plain ``torch.nn.Module``s, built from a JSON-ready spec.

The spec (``{"kind": "fnn", "in_features": 10, ...}``) is saved beside the weights so a model can be rebuilt
without executing anything stored in the artifact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_args

import torch
from torch import nn

from pipeline.config import ModelConfig
from pipeline.config.base import check_choice
from pipeline.config.data import Task
from pipeline.config.training import Activation, Init, NetKind
from pipeline.errors import PipelineError
from pipeline.nets.cnn import CNN
from pipeline.nets.ensemble import Ensemble
from pipeline.nets.fnn import FNN
from pipeline.nets.rnn import RNN

# one class per value of model.kind but 'auto' (settled when params are read); tests/nets check the keys
NETS: dict[str, type[nn.Module]] = {"fnn": FNN, "cnn": CNN, "rnn": RNN}
FIXED_LENGTH = ("fnn",)  # kinds whose input width fixes the number of steps a sequence may have


def net_kind(spec: dict[str, Any]) -> str:
    """The architecture a spec builds: its ``kind``, or for an ensemble its member's."""
    member = spec.get("member") if spec.get("kind") == "ensemble" else spec
    return str(member.get("kind")) if isinstance(member, dict) else "ensemble"


def net_spec(model: ModelConfig, modality: str, input_shape: tuple[int, ...], out_features: int) -> dict[str, Any]:
    """The spec of the network ``model`` describes for inputs of ``input_shape`` (one example, no batch axis).

    Tables are (F,), images (C, H, W), sequences (T, F + 1) with the mask last.

    Raises:
        PipelineError: If the network cannot take the modality (a CNN or RNN on plain rows).
    """
    common = {"out_features": out_features, "hidden": list(model.hidden), "activation": model.activation,
              "dropout": model.dropout, "bias": model.bias, "norm": model.norm, "init": model.init}
    if model.kind == "fnn":
        return {"kind": "fnn", "in_features": int(math.prod(input_shape)), **common}
    if modality == "tabular":
        raise PipelineError(
            f"model.kind = {model.kind!r} with tabular data: expected 'fnn' (convolutions and recurrences need "
            "images or sequences)"
        )
    if model.kind == "cnn":
        cnn = model.cnn
        return {"kind": "cnn", "in_channels": int(input_shape[0] if modality == "image" else input_shape[-1]),
                "dims": 2 if modality == "image" else 1, "channels": list(cnn.channels), "kernel": cnn.kernel,
                "stride": cnn.stride, "padding": cnn.padding, "pool": cnn.pool, "batch_norm": cnn.batch_norm,
                **common}
    rnn = model.rnn
    size = input_shape[0] * input_shape[2] if modality == "image" else input_shape[-1] - 1
    return {"kind": "rnn", "input_size": int(size), "hidden_size": rnn.hidden_size, "cell": rnn.cell,
            "layers": rnn.layers, "bidirectional": rnn.bidirectional, "images": modality == "image", **common}


# One way to draw a weight per ``model.init`` but ``default``, given the activation's gain and nonlinearity name.
# tests/nets check the keys against the type.
DRAWS: dict[str, Callable[[torch.Tensor, float, str], Any]] = {
    "xavier_uniform": lambda weight, gain, nonlinearity: nn.init.xavier_uniform_(weight, gain=gain),
    "xavier_normal": lambda weight, gain, nonlinearity: nn.init.xavier_normal_(weight, gain=gain),
    "kaiming_uniform": lambda weight, gain, nonlinearity: nn.init.kaiming_uniform_(weight, nonlinearity=nonlinearity),
    "kaiming_normal": lambda weight, gain, nonlinearity: nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity),
    "orthogonal": lambda weight, gain, nonlinearity: nn.init.orthogonal_(weight, gain=gain),
}
# per model.activation, the nonlinearity whose gain torch.nn.init uses (GELU and ELU counted as ReLU)
NONLINEARITIES: dict[str, str] = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "relu", "gelu": "relu",
                                  "sigmoid": "sigmoid", "tanh": "tanh"}


def initialise(net: nn.Module, scheme: Init, activation: Activation = "relu") -> None:
    """Re-draw every weight matrix with ``scheme`` (from the global torch RNG) and zero every bias.

    ``default`` keeps PyTorch's own initialisation. Xavier/Glorot and Kaiming/He use the gain of
    ``activation`` (GELU and ELU counted as ReLU); ``orthogonal`` suits recurrent weights, and a recurrent
    layer's hidden-to-hidden weights are orthogonal under every scheme but ``default``, since repeated
    multiplication by them is what makes gradients vanish or explode. Norm layers keep weight 1 and bias 0.

    Raises:
        PipelineError: On an unknown scheme. The schema refuses one in ``params.yaml``, but a spec also comes
            from a model bundle's ``net.json`` (:meth:`pipeline.bundle.ModelBundle.load`), which it never sees.
    """
    check_choice("model.init", scheme, Init, PipelineError)
    if scheme == "default":
        return
    nonlinearity = NONLINEARITIES[activation]
    gain = nn.init.calculate_gain(nonlinearity)

    def draw(weight: torch.Tensor) -> None:
        DRAWS[scheme](weight, gain, nonlinearity)

    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            draw(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.RNNBase):
            for name, parameter in module.named_parameters():
                if name.startswith("weight_hh"):
                    for gate in parameter.chunk(parameter.shape[0] // module.hidden_size):  # one block per gate
                        nn.init.orthogonal_(gate)
                elif name.startswith("weight_ih"):
                    draw(parameter)
                else:
                    nn.init.zeros_(parameter)


def ensemble_spec(member: dict[str, Any], size: int, task: str) -> dict[str, Any]:
    """The spec of ``size`` networks of spec ``member`` averaged for ``task`` (see :class:`Ensemble`)."""
    return {"kind": "ensemble", "size": size, "task": task, "member": member}


def ensemble_net(spec: dict[str, Any]) -> Ensemble:
    """Instantiate an ensemble spec: ``size`` members built from ``member``.

    Raises:
        PipelineError: If the spec lacks its size, task or member, or they are not what an ensemble takes.
    """
    size, task, member = spec.get("size"), spec.get("task"), spec.get("member")
    if not isinstance(size, int) or size < 1 or task not in get_args(Task) \
            or not isinstance(member, dict) or member.get("kind") == "ensemble":
        raise PipelineError(
            f"net spec for 'ensemble': expected a size >= 1, a task and one member network's spec, got size {size!r}, "
            f"task {task!r}, member kind {member.get('kind') if isinstance(member, dict) else member!r}"
        )
    return Ensemble([build_net(member) for _ in range(size)], task)


def build_net(spec: dict[str, Any]) -> nn.Module:
    """Instantiate the network a spec describes, initialised as its ``init`` says.

    Raises:
        PipelineError: On an unknown kind or init, or arguments the network does not take.
        ValueError: On a setting the network refuses (an unknown activation, say).
    """
    kwargs = dict(spec)
    kind = kwargs.pop("kind", None)
    if kind == "ensemble":
        return ensemble_net(spec)
    init = kwargs.pop("init", "default")
    check_choice("model.kind", kind, NetKind, PipelineError)
    try:
        net = NETS[kind](**kwargs)
    except TypeError as exc:
        raise PipelineError(f"net spec for {kind!r}: {exc}") from None
    with torch.no_grad():
        initialise(net, init, kwargs.get("activation", "relu"))
    return net
