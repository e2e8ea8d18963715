"""Network architectures as plain ``torch.nn.Module``s, built from a JSON-ready spec.

The spec (``{"kind": "fnn", "in_features": 10, ...}``) is saved beside the weights so a model can be rebuilt
without executing anything stored in the artifact.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from pipeline.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.nets.cnn import CNN
from pipeline.nets.fnn import FNN
from pipeline.nets.rnn import RNN

NETS: dict[str, type[nn.Module]] = {"fnn": FNN, "cnn": CNN, "rnn": RNN}


def net_spec(model: ModelConfig, modality: str, input_shape: tuple[int, ...], out_features: int) -> dict[str, Any]:
    """The spec of the network ``model`` describes for inputs of ``input_shape`` (one example, no batch axis).

    Tables are (F,), images (C, H, W), sequences (T, F + 1) with the mask last.

    Raises:
        PipelineError: If the network cannot take the modality (a CNN or RNN on plain rows).
    """
    common = {"out_features": out_features, "hidden": list(model.hidden), "activation": model.activation,
              "dropout": model.dropout}
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


def build_net(spec: dict[str, Any]) -> nn.Module:
    """Instantiate the network a spec describes.

    Raises:
        PipelineError: On an unknown kind or arguments the network does not take.
    """
    kwargs = dict(spec)
    kind = kwargs.pop("kind", None)
    if kind not in NETS:
        raise PipelineError(f"model.kind: expected one of {sorted(NETS)}, got {kind!r}")
    try:
        return NETS[kind](**kwargs)
    except TypeError as exc:
        raise PipelineError(f"net spec for {kind!r}: {exc}") from None
