"""Checkpoints: a safe file format, and a training interrupted midway that resumes to the very same weights."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.training.fit import fit
from pipeline.training import checkpoints
from tests.factories import MakeParams, ScaledData


class Interrupted(Exception):
    """Raised from the per-epoch sink: the training stops midway, as when MLflow logging fails."""


TRAIN = {"max_epochs": 10, "batch_size": 8}  # this file's trainings: short, in small batches
DIGITS = {"source": "digits", "target": "digit"}
SMALL_CNN = {"kind": "cnn", "hidden": [], "cnn": {"channels": [4], "kernel": 3, "stride": 1, "padding": 1,
                                                  "pool": "max", "batch_norm": True}}


@pytest.fixture
def scaled(scaled_data: ScaledData) -> Path:
    return scaled_data("table", train=49, val=16)  # 49: the last mini-batch of one row joins the one before


@pytest.fixture
def scaled_images(scaled_data: ScaledData) -> Path:
    return scaled_data("images", train=40, val=12, side=8, seed=1, pattern="top")


def _interrupt_at(epoch: int):
    def sink(metrics: dict, at: int) -> None:
        if at == epoch:
            raise Interrupted(f"stopped at epoch {at}")
    return sink


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


RESUME_CASES = {
    "step-with-warmup-batch-norm-noise": ({"norm": "batch"}, {
        "schedule": {"kind": "step", "step_size": 3, "gamma": 0.5, "patience": 5, "warmup_epochs": 1},
        "augment": {"flip": "none", "shift": 0, "noise": 0.1}}),
    "onecycle-adam-moves-rate-and-momentum-per-batch": ({}, {
        "schedule": {"kind": "onecycle", "step_size": 3, "gamma": 0.5, "patience": 1, "warmup_epochs": 0}}),
    "plateau-sgd-momentum-layer-norm": ({"norm": "layer"}, {
        "optimizer": "sgd", "momentum": 0.9,
        "schedule": {"kind": "plateau", "step_size": 3, "gamma": 0.5, "patience": 1, "warmup_epochs": 0}}),
}


@pytest.mark.parametrize(("model", "train"), RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_interrupted_training_resumes_to_bit_identical_weights(
    scaled: Path, tmp_path: Path, make_params: MakeParams, model: dict, train: dict
) -> None:
    params = make_params(model=model, train={**TRAIN, **train})
    whole = fit(params, scaled, n_outputs=3, checkpoints=tmp_path / "whole")
    with pytest.raises(Interrupted):
        fit(params, scaled, n_outputs=3, sink=_interrupt_at(6), checkpoints=tmp_path / "cut")
    assert checkpoints.load(tmp_path / "cut" / "last.ckpt")["epoch"] == 5  # epoch 6 never finished
    resumed = fit(params, scaled, n_outputs=3, checkpoints=tmp_path / "cut")
    assert resumed.resumed_from == 6 and whole.resumed_from is None
    assert _same(whole.state_dict, resumed.state_dict)
    assert resumed.history == whole.history  # the epochs before the interruption came back from the checkpoint
    assert resumed.best_epoch == whole.best_epoch


def test_cnn_with_flips_and_shifts_resumes_to_bit_identical_weights(scaled_images: Path, tmp_path: Path,
                                                                    make_params: MakeParams) -> None:
    params = make_params(data=DIGITS, model=SMALL_CNN,
                         train={**TRAIN, "max_epochs": 6, "augment": {"flip": "both", "shift": 2, "noise": 0.05}})
    whole = fit(params, scaled_images, n_outputs=2, checkpoints=tmp_path / "whole")
    with pytest.raises(Interrupted):
        fit(params, scaled_images, n_outputs=2, sink=_interrupt_at(3), checkpoints=tmp_path / "cut")
    resumed = fit(params, scaled_images, n_outputs=2, checkpoints=tmp_path / "cut")
    assert resumed.resumed_from == 3
    assert _same(whole.state_dict, resumed.state_dict)


def test_augmentation_changes_training(scaled_images: Path, make_params: MakeParams) -> None:
    train = {**TRAIN, "max_epochs": 2}
    plain = fit(make_params(data=DIGITS, model=SMALL_CNN, train=train), scaled_images, n_outputs=2)
    flipped = fit(make_params(data=DIGITS, model=SMALL_CNN,
                              train={**train, "augment": {"flip": "horizontal", "shift": 0, "noise": 0.0}}),
                  scaled_images, n_outputs=2)
    assert plain.history[0]["train/loss"] != flipped.history[0]["train/loss"]
    assert plain.history[0]["val/loss"] != flipped.history[0]["val/loss"]


def test_a_finished_training_is_trained_afresh_not_resumed(scaled: Path, tmp_path: Path,
                                                           make_params: MakeParams) -> None:
    params = make_params(train={**TRAIN, "max_epochs": 4})
    first = fit(params, scaled, n_outputs=3, checkpoints=tmp_path)
    again = fit(params, scaled, n_outputs=3, checkpoints=tmp_path)
    assert again.resumed_from is None and again.epochs == 4
    assert _same(first.state_dict, again.state_dict)


def test_a_checkpoint_of_other_params_is_discarded(scaled: Path, tmp_path: Path, make_params: MakeParams) -> None:
    with pytest.raises(Interrupted):
        fit(make_params(train=TRAIN), scaled, n_outputs=3, sink=_interrupt_at(5), checkpoints=tmp_path / "cut")
    other = make_params(train={**TRAIN, "lr": 0.02})
    resumed = fit(other, scaled, n_outputs=3, checkpoints=tmp_path / "cut")
    fresh = fit(other, scaled, n_outputs=3)
    assert resumed.resumed_from is None
    assert _same(resumed.state_dict, fresh.state_dict)


def test_the_last_checkpoint_holds_the_whole_history_and_the_best_weights(
        scaled: Path, tmp_path: Path, make_params: MakeParams) -> None:
    (tmp_path / "best.ckpt").write_bytes(b"left by an earlier version")
    result = fit(make_params(train={**TRAIN, "max_epochs": 8, "checkpoint_every": 3}), scaled, n_outputs=3,
                 checkpoints=tmp_path)
    last = checkpoints.load(tmp_path / "last.ckpt")
    assert last["callbacks"]["Checkpoints"]["finished"] is True  # saved once more when training ended
    assert len(last["callbacks"]["EpochHistory"]["history"]) == 8
    best = last["callbacks"]["BestWeights"]
    assert best["best_epoch"] == result.best_epoch and _same(best["weights"], result.state_dict)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no best.ckpt: nothing reads one


def test_an_auto_schedule_saves_every_few_epochs_and_resumes_to_bit_identical_weights(
        scaled: Path, tmp_path: Path, make_params: MakeParams) -> None:
    # 49 rows in batches of 8: 7 steps an epoch, so over 40 epochs 'auto' saves every 4 (a tenth of them)
    params = make_params(train={**TRAIN, "max_epochs": 40, "early_stopping": {"patience": 40}})
    assert params.train.checkpoint_every == "auto"
    whole = fit(params, scaled, n_outputs=3, checkpoints=tmp_path / "whole")
    with pytest.raises(Interrupted):
        fit(params, scaled, n_outputs=3, sink=_interrupt_at(10), checkpoints=tmp_path / "cut")
    assert checkpoints.load(tmp_path / "cut" / "last.ckpt")["epoch"] == 7  # saved after epochs 3 and 7, not 8-9
    resumed = fit(params, scaled, n_outputs=3, checkpoints=tmp_path / "cut")
    assert resumed.resumed_from == 8 and resumed.epochs == whole.epochs
    assert _same(resumed.state_dict, whole.state_dict) and resumed.history == whole.history


def test_no_checkpoints_when_every_is_zero(scaled: Path, tmp_path: Path, make_params: MakeParams) -> None:
    fit(make_params(train={**TRAIN, "max_epochs": 2, "checkpoint_every": 0}), scaled, n_outputs=3,
        checkpoints=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_round_trip_keeps_types_keys_and_special_floats(tmp_path: Path) -> None:
    state = {
        "epoch": 3, "name": "x", "flag": True, "none": None, "best": math.inf, "nan": math.nan,
        "betas": (0.9, 0.999), "groups": [{"lr": 0.1, "params": [0, 1]}],
        "state": {0: {"exp_avg": torch.randn(3, 2)}, 1: {"step": torch.tensor(4.0)}},
        "rng": torch.get_rng_state(), "mask": torch.tensor([True, False]),
    }
    checkpoints.save(state, tmp_path / "a.ckpt")
    back = checkpoints.load(tmp_path / "a.ckpt")
    assert back["betas"] == (0.9, 0.999) and isinstance(back["betas"], tuple)
    assert set(back["state"]) == {0, 1}  # integer keys stay integers
    assert torch.equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert torch.equal(back["rng"], state["rng"]) and back["mask"].dtype == torch.bool
    assert back["best"] == math.inf and math.isnan(back["nan"])
    assert {k: back[k] for k in ("epoch", "name", "flag", "none", "groups")} == {
        "epoch": 3, "name": "x", "flag": True, "none": None, "groups": [{"lr": 0.1, "params": [0, 1]}]}
    assert not list(tmp_path.glob(".*partial"))


def test_an_object_it_cannot_store_is_refused_by_path() -> None:
    with pytest.raises(TypeError, match=r"checkpoint\.optimizer\.fn: expected tensors, numbers"):
        checkpoints._encode({"optimizer": {"fn": print}}, {}, "")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling this writes the marker file
        return (Path.write_text, (self.marker, "executed"))


def test_a_pickled_checkpoint_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    planted = tmp_path / "last.ckpt"
    planted.write_bytes(pickle.dumps({"epoch": 1, "payload": _Payload(marker)}))
    with pytest.raises(PipelineError, match=f"{planted}: expected a training checkpoint written by this pipeline"):
        checkpoints.load(planted)
    assert not marker.exists()
    assert checkpoints.resumable(tmp_path, "any") is None and not planted.exists()  # removed, never resumed
    assert not marker.exists()


def test_a_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    checkpoints.save({"w": torch.randn(100)}, tmp_path / "last.ckpt")
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match="last.ckpt: expected a training checkpoint"):
        checkpoints.load(tmp_path / "last.ckpt")
    shutil.rmtree(tmp_path)


def test_a_checkpoint_of_other_data_is_discarded(scaled: Path, scaled_data: ScaledData, tmp_path: Path,
                                                 make_params: MakeParams) -> None:
    params = make_params(train=TRAIN)
    with pytest.raises(Interrupted):
        fit(params, scaled, n_outputs=3, sink=_interrupt_at(5), checkpoints=tmp_path / "cut")
    other = scaled_data("table", train=49, val=16, seed=7)  # the same shape and columns, other rows
    resumed = fit(params, other, n_outputs=3, checkpoints=tmp_path / "cut")
    assert resumed.resumed_from is None
    assert _same(resumed.state_dict, fit(params, other, n_outputs=3).state_dict)


# A fit in a child process on a copy of the package, interrupted at epoch 5 with "cut", resumed with "resume";
# it prints the epoch it resumed from ("None" when it trained afresh).
CHILD = """
import sys
from pathlib import Path
from pipeline.config import parse_params
from tests.factories import params_doc
from pipeline.training.fit import fit

params = parse_params(params_doc(train={"max_epochs": 10, "batch_size": 8}))
def sink(metrics, epoch):
    if sys.argv[1] == "cut" and epoch == 5:
        raise SystemExit(3)
result = fit(params, Path(sys.argv[2]), n_outputs=3, sink=sink, checkpoints=Path(sys.argv[3]))
print("resumed_from", result.resumed_from)
"""


@pytest.mark.slow  # three child processes, each importing torch and Lightning
@pytest.mark.parametrize("changed", [None, "pipeline/training/module.py", "pipeline/nets/fnn.py"])
def test_a_checkpoint_of_other_training_code_is_discarded(scaled: Path, tmp_path: Path, changed: str | None) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = tmp_path / "code"
    for package in ("pipeline", "tests"):  # a copy whose training code can change, as a new commit changes it
        shutil.copytree(root / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "params.yaml", code / "params.yaml")
    (code / "child.py").write_text(CHILD)

    def child(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "child.py", mode, str(scaled), str(tmp_path / "ck")], cwd=code,
                              capture_output=True, text=True, check=False, env={"PYTHONPATH": str(code),
                                                                                "PATH": "/usr/bin:/bin"})

    assert child("cut").returncode == 3
    assert checkpoints.load(tmp_path / "ck" / "last.ckpt")["epoch"] == 4
    if changed is not None:  # a comment is enough: the fingerprint hashes the code's bytes
        with open(code / changed, "a") as handle:
            handle.write("\n# changed after the checkpoint was written\n")
    done = child("resume")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ("resumed_from 5" if changed is None else "resumed_from None")
