"""Clipping, L1, label smoothing and the regression loss, each through :func:`fit` on a tiny scaled folder: the
outcome of a training changes the way the knob says it should (``test_knobs`` checks the module's helpers)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from pipeline.io import write_json
from pipeline.nets import build_net
from pipeline.preprocess.encoders import Encoders
from pipeline.training.fit import fit
from tests.factories import MakeParams, ScaledData

SGD = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "batch_size": 8}


@pytest.fixture
def scaled(scaled_data: ScaledData) -> Path:
    return scaled_data("table", train=48, val=16)


def _fit(make_params: MakeParams, scaled: Path, **train: object):  # noqa: ANN202
    return fit(make_params(train=train, model={"dropout": 0.0}), scaled, n_outputs=3)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_at_a_tiny_limit_keeps_the_loss_where_it_started(scaled: Path, make_params: MakeParams,
                                                                  mode: str) -> None:
    train = {**SGD, "max_epochs": 8, "early_stopping": {"patience": 8}}
    free = _fit(make_params, scaled, **train)
    held = _fit(make_params, scaled, **train, gradient_clip={"mode": mode, "max": 1e-6})
    drop = lambda result: result.history[0]["train/loss"] - result.history[-1]["train/loss"]  # noqa: E731
    assert drop(free) > 0.1  # unclipped SGD learns
    assert abs(drop(held)) < 1e-3  # steps of at most 1e-6 leave the weights, and so the loss, almost as they were


def test_a_large_l1_drives_the_weights_towards_zero(scaled: Path, make_params: MakeParams) -> None:
    train = {**SGD, "max_epochs": 10, "early_stopping": {"patience": 10}}
    plain = _fit(make_params, scaled, **train)
    sparse = _fit(make_params, scaled, **train, l1=0.01)
    weights = [k for k in plain.state_dict if k.endswith("weight")]

    def size(result) -> float:  # noqa: ANN001
        return sum(float(result.state_dict[k].abs().sum()) for k in weights)

    def near_zero(result) -> int:  # noqa: ANN001
        return sum(int((result.state_dict[k].abs() < 1e-2).sum()) for k in weights)

    assert size(sparse) < 0.5 * size(plain)
    assert near_zero(sparse) > 2 * near_zero(plain)


def test_label_smoothing_puts_a_floor_under_the_train_loss(scaled: Path, make_params: MakeParams) -> None:
    # a smoothed target's cross-entropy is at least the target's own entropy: 3 classes, smoothing 0.3 give
    # targets (0.8, 0.1, 0.1), whose entropy is 0.639
    smoothing, classes = 0.3, 3
    high, low = 1 - smoothing + smoothing / classes, smoothing / classes
    floor = -(high * math.log(high) + (classes - 1) * low * math.log(low))
    train = {"optimizer": "adam", "lr": 0.05, "weight_decay": 0.0, "batch_size": 8, "max_epochs": 40,
             "early_stopping": {"patience": 40}}
    plain = _fit(make_params, scaled, **train)
    smoothed = _fit(make_params, scaled, **train, label_smoothing=smoothing)
    assert min(row["train/loss"] for row in plain.history) < floor - 0.1  # without it the loss goes below
    assert min(row["train/loss"] for row in smoothed.history) >= floor - 1e-4


def _regression(folder: Path) -> Path:
    """Three features, a linear target, and a few huge outliers among the val targets."""
    rng = np.random.default_rng(3)
    for name, n in (("train", 40), ("val", 20)):
        x = rng.normal(size=(n, 3)).astype("float32")
        frame = pd.DataFrame(x, columns=["a", "b", "c"])
        y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=n)
        if name == "val":
            y[:3] += 25.0  # errors far beyond huber's delta of 1: mse, mae and huber all differ
        frame["y"] = y.astype("float32")
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    write_json(folder / "encoder.json", Encoders.passthrough(["a", "b", "c"]).to_dict())
    return folder


LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


@pytest.mark.parametrize("name", LOSSES)
def test_the_regression_loss_is_the_one_configured(tmp_path: Path, make_params: MakeParams, name: str) -> None:
    folder = _regression(tmp_path)
    params = make_params(data={"source": "diabetes", "target": "y", "task": "regression"},
                         evaluate={"primary_metric": "mae"}, model={"dropout": 0.0},
                         train={"max_epochs": 3, "batch_size": 8, "regression_loss": name,
                                "early_stopping": {"patience": 3}})
    result = fit(params, folder, n_outputs=1, task="regression")
    net = build_net(result.spec)
    net.load_state_dict(result.state_dict)
    val = pd.read_parquet(folder / "val.parquet")
    with torch.no_grad():
        pred = net.eval()(torch.tensor(val[["a", "b", "c"]].to_numpy()))[:, 0]
    target = torch.tensor(val["y"].to_numpy())
    recorded = result.history[result.best_epoch]["val/loss"]  # the weights fit returns are the best epoch's
    assert recorded == pytest.approx(float(LOSSES[name](pred, target)), rel=1e-4)
    for other, loss in LOSSES.items():
        if other != name:
            assert recorded != pytest.approx(float(loss(pred, target)), rel=1e-2), other


def test_last_batch_changes_the_training_only_when_rows_are_left_over(scaled: Path, make_params: MakeParams) -> None:
    train = {**SGD, "max_epochs": 3, "early_stopping": {"patience": 3}}

    def weights(batch_size: int, last: str) -> dict[str, torch.Tensor]:
        return _fit(make_params, scaled, **{**train, "batch_size": batch_size, "last_batch": last}).state_dict

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    exact = [weights(8, last) for last in ("keep", "even", "drop")]  # 48 train rows: six batches of 8, no leftover
    assert same(exact[0], exact[1]) and same(exact[0], exact[2])
    keep, even, drop = (weights(10, last) for last in ("keep", "even", "drop"))  # 4 x 10 + 8 left over
    assert not same(keep, even) and not same(keep, drop) and not same(even, drop)
