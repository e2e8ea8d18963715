"""The forward pass in bounded chunks: the same outputs, bit for bit, as one pass, and a lower memory peak."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipeline.nets import build_net
from pipeline.nets.chunks import chunk_bounds, chunked_forward

ROOT = Path(__file__).resolve().parents[2]  # the child imports this checkout's pipeline, whatever the cwd

COMMON = {"hidden": [], "activation": "relu", "dropout": 0.3, "bias": True, "norm": "none", "init": "default"}
FNN = {**COMMON, "kind": "fnn", "in_features": 20, "out_features": 3, "hidden": [64, 32], "norm": "batch"}
CNN = {**COMMON, "kind": "cnn", "in_channels": 1, "dims": 2, "channels": [8, 16], "kernel": 3, "stride": 1,
       "padding": 1, "pool": "max", "batch_norm": True, "out_features": 4}
RNN = {**COMMON, "kind": "rnn", "input_size": 3, "hidden_size": 16, "cell": "gru", "layers": 1,
       "bidirectional": False, "images": False, "out_features": 2}


def padded_sequences(n: int, steps: int, features: int) -> torch.Tensor:
    """Series of 1 to ``steps`` steps, zero-padded, with the mask channel last (as the scale stage writes them)."""
    x = torch.randn(n, steps, features)
    lengths = torch.randint(1, steps + 1, (n,))
    mask = (torch.arange(steps)[None, :] < lengths[:, None]).float()
    return torch.cat([x * mask[..., None], mask[..., None]], dim=2)


INPUTS = {"fnn": (FNN, lambda n: torch.randn(n, 20)), "cnn": (CNN, lambda n: torch.randn(n, 1, 12, 12)),
          "rnn": (RNN, lambda n: padded_sequences(n, 9, 3))}


def test_chunk_bounds_are_balanced_and_bounded() -> None:
    assert chunk_bounds(10, 10) == [0, 10] and chunk_bounds(3, 10) == [0, 3]
    assert chunk_bounds(10, 4) == [0, 3, 7, 10]  # three chunks of 3-4 rows, not 4, 4, 2
    assert chunk_bounds(4097, 4096) == [0, 2048, 4097]  # one row over: two halves, never a one-row tail
    for n, chunk in ((1000, 7), (12345, 1000), (99, 98), (2500, 833), (999_425, 4096)):
        bounds = chunk_bounds(n, chunk)
        sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        assert sum(sizes) == n and max(sizes) <= chunk and min(sizes) >= chunk // 2


@pytest.mark.parametrize("kind", ["fnn", "cnn", "rnn"])
def test_chunked_forward_equals_one_pass_exactly(kind: str) -> None:
    torch.manual_seed(0)
    spec, inputs = INPUTS[kind]
    net = build_net(spec)
    net.train()
    net(inputs(64))  # move batch norm's running statistics off their initial values
    net.eval()  # dropout off, batch norm on running statistics: each row's output is its own
    x = inputs(2500)
    with torch.inference_mode():
        whole = net(x)
        # one pass; 3 chunks of 833-834; 3 of 833-834 again, where chunks of 833 would leave a one-row tail (a
        # one-row product takes another kernel on CPU, whose sums differ in the last bit); 5 of 500
        for chunk in (2500, 1000, 833, 600):
            assert torch.equal(chunked_forward(net, x, chunk), whole), chunk
    with torch.no_grad():  # validation's grad mode under Lightning
        assert torch.equal(chunked_forward(net, x, 700), whole)


PEAK = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    def high_water() -> int:
        # VmHWM belongs to this process's own address space, new at exec; ru_maxrss would start at the forking
        # parent's peak (Linux carries it over exec), which a big pytest process already holds
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

    import torch
    from pipeline.nets import build_net
    from pipeline.nets.chunks import chunked_forward

    torch.set_num_threads(1)
    torch.manual_seed(0)
    chunk = None if sys.argv[1] == "none" else int(sys.argv[1])
    net = build_net(json.loads(sys.argv[2])).eval()
    x = torch.randn(int(sys.argv[3]), 1, 32, 32)
    with torch.inference_mode():
        net(x[:64])  # the kernels' own first-use allocations, before the baseline
        before = high_water()
        out = chunked_forward(net, x, chunk)
        after = high_water()
    print(json.dumps({"rise_kib": after - before, "sum": float(out.double().sum())}))
""")


def peak_rise(chunk: int | None, spec: dict, rows: int) -> dict:
    """The resident-memory high-water rise (KiB) of one forward pass over ``rows`` images, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", PEAK, str(chunk or "none"), json.dumps(spec), str(rows)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_chunked_forward_peaks_below_one_pass() -> None:
    # 3,000 32x32 images through 16 channels: one pass holds ~200 MB of activations at once, 250-image chunks ~16 MB
    spec = {**CNN, "channels": [16], "pool": "none", "batch_norm": False, "dropout": 0.0}
    whole, chunked = peak_rise(None, spec, 3000), peak_rise(250, spec, 3000)
    assert chunked["sum"] == whole["sum"]  # the same seeded outputs
    assert whole["rise_kib"] > 150_000  # the one pass's activations: the measure sees them
    assert chunked["rise_kib"] < whole["rise_kib"] / 4
