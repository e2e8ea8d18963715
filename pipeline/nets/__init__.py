"""Network architectures as plain ``torch.nn.Module``s, built from a JSON-ready spec.

The spec (``{"kind": "fnn", "in_features": 10, ...}``) is saved beside the weights so a model can be rebuilt
without executing anything stored in the artifact.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.errors import PipelineError
from pipeline.nets.fnn import FNN

NETS: dict[str, type[nn.Module]] = {"fnn": FNN}


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
