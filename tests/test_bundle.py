"""The bundle's network outputs, ``chunk`` examples per forward pass (``inference.json``), as from one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.bundle import ModelBundle
from pipeline.nets import build_net
from tests.nets.test_chunks import INPUTS


@pytest.mark.parametrize("kind", ["fnn", "cnn", "rnn"])
def test_bundle_logits_in_chunks_equal_one_pass(kind: str) -> None:
    torch.manual_seed(0)
    spec, inputs = INPUTS[kind]
    net = build_net(spec)
    x = inputs(2500).numpy()
    # logits reads only the network and its chunk; the preprocessing state is another test's
    one_pass = ModelBundle(None, None, None, None, net)  # a bundle from before inference.json: one pass
    chunked = ModelBundle(None, None, None, None, build_net(spec), chunk=833)
    chunked.net.load_state_dict(net.state_dict())
    assert one_pass.chunk is None
    assert np.array_equal(chunked.logits(x), one_pass.logits(x))
    assert np.array_equal(chunked.outputs(net, x), one_pass.logits(x))  # a restart's network, the same way
