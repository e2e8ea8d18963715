"""Training on a tiny hand-made scaled dataset: determinism, seeds, knobs reaching the optimizer, NaN stop."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.preprocess.encoders import Encoders
from pipeline.training.fit import fit
from pipeline.nets.fnn import FNN
from tests.factories import MakeParams, ScaledData
from tests.training.lit import lit_model

TRAIN = {"max_epochs": 4, "batch_size": 8}  # this file's trainings: four epochs, in small batches


@pytest.fixture
def scaled(scaled_data: ScaledData) -> Path:
    return scaled_data("table", train=48, val=16)


def test_same_seed_gives_bit_identical_weights(scaled: Path, make_params: MakeParams) -> None:
    params = make_params(train=TRAIN)
    first, second = fit(params, scaled, n_outputs=3), fit(params, scaled, n_outputs=3)
    assert first.state_dict.keys() == second.state_dict.keys()
    for key in first.state_dict:
        assert torch.equal(first.state_dict[key], second.state_dict[key]), key
    assert first.history == second.history


def test_a_probe_sees_every_epoch_and_leaves_the_weights_as_they_were(scaled: Path,
                                                                      make_params: MakeParams) -> None:
    import lightning as L

    class Probe(L.Callback):  # what benchmarks/stopping.py does: score the net after each epoch
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            module.net.eval()
            with torch.no_grad():
                module.net(torch.zeros(4, module.net.layers[0].in_features))
            module.net.train()
            self.epochs.append(trainer.current_epoch)

    params = make_params(train=TRAIN)
    plain, seen = fit(params, scaled, n_outputs=3), Probe()
    probed = fit(params, scaled, n_outputs=3, probes=(seen,))
    assert seen.epochs == list(range(plain.epochs))
    for key in plain.state_dict:
        assert torch.equal(plain.state_dict[key], probed.state_dict[key]), key


def test_other_seed_gives_other_weights(scaled: Path, make_params: MakeParams) -> None:
    params = make_params(train=TRAIN)
    first = fit(params, scaled, n_outputs=3)
    other = fit(make_params(seed=params.seed + 1, train=TRAIN), scaled, n_outputs=3)
    assert not torch.equal(first.state_dict["layers.0.weight"], other.state_dict["layers.0.weight"])


def test_history_has_one_row_per_epoch_with_train_and_val(scaled: Path, make_params: MakeParams) -> None:
    result = fit(make_params(train=TRAIN), scaled, n_outputs=3)
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr"} <= set(result.history[0])
    assert result.device == "cpu"
    assert result.spec["in_features"] == 4 and result.spec["out_features"] == 3


def test_best_weights_are_from_the_best_epoch(scaled: Path, make_params: MakeParams) -> None:
    result = fit(make_params(train={**TRAIN, "max_epochs": 6}), scaled, n_outputs=3)
    losses = [row["val/loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses))
    assert result.best_value == pytest.approx(min(losses))


def test_non_finite_loss_stops_with_a_clear_error(scaled: Path, tmp_path: Path, make_params: MakeParams) -> None:
    # Features near float32's limit overflow the first layer, so the loss turns inf/nan within two epochs:
    # the same failure an exploding learning rate produces, without depending on how fast it diverges.
    for name in ("train", "val"):
        frame = pd.read_parquet(scaled / f"{name}.parquet")
        frame[["a", "b", "c", "d"]] *= np.float32(1e38)
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    shutil.copy(scaled / "encoder.json", tmp_path / "encoder.json")
    with pytest.raises(PipelineError, match=r"(train|val)/loss = (nan|inf) at epoch \d+: expected a finite loss"):
        fit(make_params(train=TRAIN), tmp_path, n_outputs=3)


@pytest.mark.parametrize(("name", "momentum", "expected"), [("sgd", 0.9, torch.optim.SGD), ("adam", 0.0, torch.optim.Adam)])
def test_optimizer_knobs_reach_the_optimizer(name: str, momentum: float, expected: type) -> None:
    module = lit_model(FNN(3, [2], 2), optimizer=name, lr=0.123, momentum=momentum, weight_decay=0.01)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is expected
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.123 and group["weight_decay"] == 0.01
    if name == "sgd":
        assert group["momentum"] == 0.9


def test_class_weight_reaches_the_loss() -> None:
    torch.manual_seed(0)
    net = FNN(3, [], 2)
    x, y = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 1])
    weighted = lit_model(net, lr=0.1, class_weight=[0.75, 1.5])
    logits = net(x)
    per_row = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([0.75, 1.5])[y]
    expected = (per_row * w).sum() / w.sum()  # PyTorch's weighted mean
    weighted.log_dict = lambda *a, **k: None  # logging needs a Trainer; the loss itself does not
    assert torch.allclose(weighted._evaluate((x, y), "val"), expected)
    plain = lit_model(net, lr=0.1)
    plain.log_dict = lambda *a, **k: None
    assert not torch.allclose(plain._evaluate((x, y), "val"), expected)


def test_regression_loss_is_mean_squared_error_on_the_single_output() -> None:
    torch.manual_seed(0)
    net = FNN(3, [], 1)
    x, y = torch.randn(5, 3), torch.randn(5)
    module = lit_model(net, task="regression", lr=0.1)
    module.log_dict = lambda *a, **k: None
    assert torch.allclose(module._evaluate((x, y), "val"), ((net(x)[:, 0] - y) ** 2).mean())


@pytest.fixture
def scaled_images(scaled_data: ScaledData) -> Path:
    """Tiny 2-class 1x6x6 images: a bright left or right half, with noise."""
    return scaled_data("images", train=32, val=12, side=6, seed=0, pattern="halves")


@pytest.mark.parametrize("kind", ["cnn", "rnn"])
def test_cnn_and_rnn_train_bit_identically_twice(scaled_images: Path, make_params: MakeParams, kind: str) -> None:
    params = make_params(data={"source": "digits", "target": "digit"}, train=TRAIN,
                         model={"kind": kind, "hidden": [], "cnn": {"channels": [4, 8]}, "rnn": {"hidden_size": 8}})
    first, second = fit(params, scaled_images, n_outputs=2), fit(params, scaled_images, n_outputs=2)
    assert first.spec["kind"] == kind
    assert first.state_dict.keys() == second.state_dict.keys()
    for key in first.state_dict:
        assert torch.equal(first.state_dict[key], second.state_dict[key]), key
    assert first.history[-1]["val/acc"] >= 0.75  # the halves are easy to tell apart: it learned something


def test_an_epoch_takes_one_optimizer_step_per_mini_batch_in_the_given_order() -> None:
    from pipeline.training.data import EpochPasses

    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    steps: list[torch.Tensor] = []
    module = lit_model(FNN(4, [], 3), optimizer="sgd", lr=0.1, rows_per_step=4)
    module.log_dict = module.log = lambda *a, **k: None  # logging and optimizers() need a Trainer; the loop does not

    class Recorder(torch.optim.SGD):
        def step(self, closure=None):  # noqa: ANN001, ANN201
            steps.append(module.net.layers[0].weight.grad.clone())
            return super().step(closure)

    optimizer = Recorder(module.parameters(), lr=0.1)
    module.optimizers = lambda: SimpleNamespace(optimizer=optimizer)  # Lightning's wrapper exposes .optimizer
    order = next(iter(EpochPasses(x, y, seed=0, device=torch.device("cpu"))))[2]
    assert sorted(order.tolist()) == list(range(10))
    reference = FNN(4, [], 3)
    reference.load_state_dict(module.net.state_dict())
    module.training_step((x, y, order), 0)
    assert len(steps) == 3  # batches of 4, 4 and 2 rows
    idx = order[:4]  # the first step's gradient is the first four rows' loss, from the starting weights
    torch.nn.functional.cross_entropy(reference(x[idx]), y[idx]).backward()
    assert torch.allclose(steps[0], reference.layers[0].weight.grad)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"kind": "step", "step_size": 2, "gamma": 0.5}, [0.01, 0.01, 0.005, 0.005]),
        ({"kind": "cosine", "warmup_epochs": 1}, [0.005, 0.01, 0.0075, 0.0025]),
    ],
    ids=["step", "cosine-after-warmup"],
)
def test_schedule_moves_the_rate_epoch_by_epoch_in_a_real_fit(scaled: Path, make_params: MakeParams, schedule: dict,
                                                              expected: list) -> None:
    result = fit(make_params(train={**TRAIN, "schedule": schedule}), scaled, n_outputs=3)
    assert [row["lr"] for row in result.history] == pytest.approx(expected)


def test_plateau_reacts_to_val_loss_in_a_real_fit(scaled: Path, make_params: MakeParams) -> None:
    params = make_params(train={**TRAIN, "max_epochs": 6,
                                "lr": 1e-7,  # so small that val/loss improves by less than the 1e-4 threshold
                                "schedule": {"kind": "plateau", "patience": 1, "gamma": 0.5},
                                "early_stopping": {"patience": 20}})
    result = fit(params, scaled, n_outputs=3)
    lrs = [row["lr"] for row in result.history]
    # epochs 0, 1 and 2 do not improve on the first by enough: after patience + 1 of them the rate halves
    assert lrs == pytest.approx([1e-7, 1e-7, 1e-7, 5e-8, 5e-8, 2.5e-8])


def test_history_carries_gradient_norms_dead_relus_and_the_train_val_gap(scaled: Path,
                                                                         make_params: MakeParams) -> None:
    result = fit(make_params(train=TRAIN, model={"hidden": [8, 4]}), scaled, n_outputs=3)
    row = result.history[-1]
    assert {k for k in row if k.startswith("grad_norm/")} == {
        "grad_norm/layers.0.weight", "grad_norm/layers.3.weight", "grad_norm/layers.6.weight"}  # linear, relu, dropout
    assert all(row[k] > 0 for k in row if k.startswith("grad_norm/"))
    assert {k for k in row if k.startswith("dead_relu/")} == {"dead_relu/layers.1", "dead_relu/layers.4"}
    assert all(0.0 <= row[k] <= 1.0 for k in row if k.startswith("dead_relu/"))
    assert row["gap/loss"] == pytest.approx(row["val/loss"] - row["train/loss"])


def test_a_relu_that_never_fires_is_reported_dead(scaled: Path) -> None:
    net = FNN(4, [5], 3)
    with torch.no_grad():
        net.layers[0].weight.zero_()
        net.layers[0].bias.fill_(-1.0)  # every hidden unit outputs relu(-1) = 0
    module = lit_model(net, lr=0.01)
    module.on_validation_epoch_start()
    module._evaluate((torch.randn(16, 4), torch.randint(0, 3, (16,))), "val")
    module.on_validation_epoch_end()
    assert float(module.figures["dead_relu/layers.1"]) == 1.0  # what the epoch history records
    assert not net.layers[1]._forward_hooks  # the watch is removed after validation


def test_a_net_without_relus_is_not_watched(scaled: Path) -> None:
    net = FNN(4, [5], 3, "tanh")
    module = lit_model(net, lr=0.01)
    module.on_validation_epoch_start()
    assert not any(m._forward_hooks for m in net.modules())  # nothing to measure: no hooks on the forward pass
    module._evaluate((torch.randn(16, 4), torch.randint(0, 3, (16,))), "val")
    module.on_validation_epoch_end()
    assert set(module.figures) == {"val/loss", "val/acc"}


def test_early_stopping_on_val_mae_for_regression(tmp_path: Path, make_params: MakeParams) -> None:
    rng = np.random.default_rng(3)
    for name, n in (("train", 40), ("val", 20)):
        x = rng.normal(size=(n, 3)).astype("float32")
        frame = pd.DataFrame(x, columns=["a", "b", "c"])
        frame["y"] = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=n)).astype("float32")
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    write_json(tmp_path / "encoder.json", Encoders.passthrough(["a", "b", "c"]).to_dict())
    params = make_params(
        data={"source": "diabetes", "target": "y", "task": "regression"}, evaluate={"primary_metric": "mae"},
        train={**TRAIN, "max_epochs": 30,
               "early_stopping": {"monitor": "val/mae", "mode": "min", "patience": 3, "min_delta": 0.0}})
    result = fit(params, tmp_path, n_outputs=1, task="regression")
    maes = [row["val/mae"] for row in result.history]
    assert result.best_epoch == int(np.argmin(maes)) and result.best_value == pytest.approx(min(maes))


def test_lr_find_records_a_suggestion_and_leaves_training_as_it_was(scaled: Path, make_params: MakeParams) -> None:
    plain = fit(make_params(train=TRAIN), scaled, n_outputs=3)
    found = fit(make_params(train={**TRAIN, "lr_find": True}), scaled, n_outputs=3)
    assert plain.lr_finding is None
    finding = found.lr_finding
    assert 1e-6 < finding.suggestion < 1.0 and finding.suggestion in finding.lrs
    assert len(finding.lrs) == len(finding.losses) >= 10
    for key in plain.state_dict:
        assert torch.equal(plain.state_dict[key], found.state_dict[key]), key


def test_bf16_mixed_precision_autocasts_the_training_step() -> None:
    """Lightning's bf16 autocast wraps the whole manual epoch loop (run here on the CPU, which Lightning allows;
    the pipeline itself keeps bf16 for GPUs)."""
    import lightning as L

    from pipeline.training.data import EpochPasses

    torch.manual_seed(0)
    net = FNN(4, [8], 2)
    seen: list[torch.dtype] = []
    net.layers[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    module = lit_model(net, lr=0.01, rows_per_step=8)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=EpochPasses(x, y, 0, torch.device("cpu")))
    assert seen and set(seen) == {torch.bfloat16}
    assert net.layers[0].weight.dtype == torch.float32  # mixed: the weights stay float32


def test_bf16_without_cuda_is_refused_before_training(scaled: Path, make_params: MakeParams) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(PipelineError, match="train.precision = 'bf16-mixed' with no CUDA device"):
        fit(make_params(train={**TRAIN, "precision": "bf16-mixed"}), scaled, n_outputs=3)


@pytest.mark.parametrize(("n", "batch", "expected"), [
    (10, 4, [0, 4, 8, 10]), (9, 4, [0, 4, 9]), (1, 4, [0, 1]), (5, 1, [0, 1, 2, 3, 4, 5]), (8, 8, [0, 8]),
])
def test_a_last_batch_of_one_row_joins_the_one_before(n: int, batch: int, expected: list[int]) -> None:
    from pipeline.training.module import batch_starts

    assert batch_starts(n, batch) == expected


@pytest.mark.parametrize(("n", "batch", "last", "expected"), [
    (195, 32, "keep", [0, 32, 64, 96, 128, 160, 192, 195]),  # shapes' 195 train series: a 3-row last batch
    (195, 32, "even", [0, 28, 56, 84, 111, 139, 167, 195]),  # as many steps, none of them small
    (195, 32, "drop", [0, 32, 64, 96, 128, 160, 192]),  # the 3 rows sit this epoch out
    (20, 32, "drop", [0, 20]), (20, 32, "even", [0, 20]),  # fewer rows than a batch: one batch of all
    (9, 4, "even", [0, 3, 6, 9]), (5, 1, "even", [0, 1, 2, 3, 4, 5]), (64, 32, "drop", [0, 32, 64]),
    (3, 2, "even", [0, 3]),  # halves of 2 and 1 rows: a one-row batch joins the one before, as with keep
])
def test_last_batch_keeps_evens_out_or_drops_the_rows_left_over(n: int, batch: int, last: str,
                                                                 expected: list[int]) -> None:
    from pipeline.training.module import batch_starts

    assert batch_starts(n, batch, last=last) == expected


def test_an_unknown_last_batch_is_refused_naming_the_key() -> None:
    from pipeline.training.module import batch_starts

    with pytest.raises(ValueError, match=r"^train.last_batch: expected one of \('keep', 'even', 'drop'\), got 'pad'"):
        batch_starts(10, 4, last="pad")


def _stop_epoch(values: list[float], mode: str, patience: int, min_delta: float) -> int:
    """The epoch Lightning's EarlyStopping rule stops at (float32: ``current -/+ min_delta`` against the best),
    or the last epoch if it never does."""
    best = np.float32(np.inf if mode == "min" else -np.inf)
    wait = 0
    for epoch, value in enumerate(np.asarray(values, dtype="float32")):
        better = value + np.float32(min_delta) < best if mode == "min" else value - np.float32(min_delta) > best
        best, wait = (value, 0) if better else (best, wait + 1)
        if wait >= patience:
            return epoch
    return len(values) - 1


@pytest.mark.parametrize(("monitor", "mode", "min_delta"), [("val/loss", "min", 0.002), ("val/acc", "max", 0.0)])
def test_early_stopping_stops_patience_epochs_after_the_last_improvement(scaled: Path, make_params: MakeParams,
                                                                        monitor: str, mode: str,
                                                                        min_delta: float) -> None:
    params = make_params(train={**TRAIN, "max_epochs": 200, "lr": 0.05, "early_stopping": {
        "monitor": monitor, "mode": mode, "patience": 4, "min_delta": min_delta}})
    result = fit(params, scaled, n_outputs=3)
    values = [row[monitor] for row in result.history]
    assert len(values) < 200  # it stopped early, at the epoch the rule says
    assert len(values) - 1 == _stop_epoch(values, mode, 4, min_delta)
