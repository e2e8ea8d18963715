"""Validation and test in chunks of ``train.eval_chunk`` examples: the same loss and metric as one pass, bit for bit,
whether the split is held on the device or left in host memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from pipeline.nets import build_net
from pipeline.training.data import FullBatch, OnHost
from pipeline.training.fit import fit
from tests.factories import MakeParams, ScaledData
from tests.nets.test_chunks import INPUTS
from tests.training.lit import lit_model

ROWS = 2500  # more than the chunks below, which all cut it into chunks of hundreds of rows


def scored(kind: str, task: str, chunk: int, stage: str, host: bool) -> tuple[torch.Tensor, ...]:
    """``(outputs, loss, logged loss sum, logged metric sum, rows)`` of ``_evaluate`` on one seeded split and a
    seeded net, the outputs being the (N, K) tensor it scores."""
    torch.manual_seed(0)
    spec, inputs = INPUTS[kind]
    net = build_net({**spec, "out_features": 1 if task == "regression" else spec["out_features"]})
    net.train()
    net(inputs(64))  # batch norm's running statistics off their initial values
    net.eval()  # as Lightning sets it for validation
    x = inputs(ROWS)
    y = torch.randn(ROWS) if task == "regression" else torch.randint(0, spec["out_features"], (ROWS,))
    module = lit_model(net, task=task, eval_chunk=chunk)
    logged: list[tuple] = []
    module._log_epoch = lambda *figures: logged.append(figures)  # logging needs a Trainer; the figures do not
    metric = module._metric
    outputs: list[torch.Tensor] = []
    module._metric = lambda out, y: (outputs.append(out), metric(out, y))[1]  # the outputs it scores
    with torch.no_grad():  # Lightning's grad mode for validation and test
        loss = module._evaluate((OnHost(x) if host else x, y), stage)
    (_, loss_sum, metric_sum, n), = logged
    return outputs[0], loss, loss_sum, metric_sum, torch.tensor(n)


@pytest.mark.parametrize("kind", ["fnn", "cnn", "rnn"])
def test_chunked_validation_scores_exactly_as_one_pass(kind: str) -> None:
    whole = scored(kind, "classification", ROWS, "val", host=False)
    for chunk, host in ((833, False), (600, True)):  # on the device, and a split left in host memory
        for stage in ("val", "test"):
            got = scored(kind, "classification", chunk, stage, host)
            assert all(torch.equal(a, b) for a, b in zip(got, whole)), (chunk, host, stage)


def test_chunked_regression_outputs_match_one_pass_to_the_last_bit_or_so() -> None:
    # a one-output layer is a matrix-vector product on CPU, whose sums for a few rows depend on how many rows it
    # is given (measured: 1 row in 2500 differs by 3e-8): not bit for bit, as pipeline.nets.chunks says
    whole = scored("fnn", "regression", ROWS, "val", host=False)
    got = scored("fnn", "regression", 600, "val", host=True)
    for a, b in zip(got, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_split_larger_than_a_chunk_stays_in_host_memory_through_lightnings_move() -> None:
    x, y = torch.randn(10, 3), torch.arange(10)
    small, = FullBatch(x, y, torch.device("cpu"), chunk=10)
    assert isinstance(small[0], torch.Tensor)  # fits in one chunk: a tensor on the device, as always
    large, = FullBatch(x, y, torch.device("cpu"), chunk=4)
    moved = move_data_to_device(large, torch.device("meta"))  # what the strategy does to every batch
    assert isinstance(moved[0], OnHost) and moved[0].tensor.device.type == "cpu"
    assert moved[1].device.type == "meta"  # the targets go to the device


def test_fit_with_a_val_split_larger_than_the_chunk_trains_the_same_weights(scaled_data: ScaledData,
                                                                            make_params: MakeParams) -> None:
    scaled = scaled_data("table", train=48, val=300)
    runs = [fit(make_params(train={"max_epochs": 3, "batch_size": 16, "eval_chunk": chunk}), scaled, n_outputs=3)
            for chunk in (4096, 100)]  # one pass, and three chunks of 100 through the Trainer's validation loop
    assert [row["val/loss"] for row in runs[0].history] == [row["val/loss"] for row in runs[1].history]
    assert all(torch.equal(runs[0].state_dict[k], runs[1].state_dict[k]) for k in runs[0].state_dict)
