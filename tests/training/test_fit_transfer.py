"""A fit started from another network (:func:`pipeline.training.fit.fit` with ``parent``): on tiny images, the
loaded encoder stays bit-identical while frozen, a different number of classes gets a fresh head, the loaded
layers start where the source ended, and a checkpoint is resumed only from the same parent's training
(``test_transfer`` checks the loading rules and the freezing on the network alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.training.fit import FitResult, fingerprint, fit
from pipeline.training.transfer import Parent
from tests.factories import MakeParams, ScaledData

MODEL = {"kind": "cnn", "hidden": [], "dropout": 0.0, "cnn": {"channels": [4, 8], "batch_norm": True}}
TRAIN = {"max_epochs": 4, "batch_size": 8, "early_stopping": {"patience": 4}}
DIGITS = {"source": "digits", "target": "digit"}


@pytest.fixture
def scaled_images(scaled_data: ScaledData) -> Path:
    """Tiny 2-class 1x6x6 images: a bright left or right half, with noise."""
    return scaled_data("images", train=32, val=12, side=6, seed=0, pattern="halves")


@pytest.fixture
def source(scaled_images: Path, make_params: MakeParams) -> FitResult:
    """The network fine-tunings start from: trained from scratch with another seed, with 3 outputs."""
    return fit(make_params(seed=7, data=DIGITS, model=MODEL, train=TRAIN), scaled_images, n_outputs=3)


def _finetune(scaled: Path, make_params: MakeParams, source: FitResult, n_outputs: int = 3,
              **train: Any) -> FitResult:
    params = make_params(data=DIGITS, model=MODEL, train={**TRAIN, "init_from": 1, **train})
    return fit(params, scaled, n_outputs=n_outputs, parent=Parent("models:/src/1", source.spec, source.state_dict))


def _features(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("features.")}


def test_a_frozen_encoder_comes_out_bit_identical_and_the_head_learns(scaled_images: Path, make_params: MakeParams,
                                                                     source: FitResult) -> None:
    tuned = _finetune(scaled_images, make_params, source, freeze="encoder")
    encoder = _features(source.state_dict)
    assert encoder and "features.1.running_mean" in encoder  # the batch norm's statistics are among them
    assert [k for k in encoder if not torch.equal(tuned.state_dict[k], encoder[k])] == []
    assert not torch.equal(tuned.state_dict["head.0.weight"], source.state_dict["head.0.weight"])


def test_unfrozen_the_loaded_layers_start_from_the_source_and_then_learn(scaled_images: Path, make_params: MakeParams,
                                                                        source: FitResult) -> None:
    tuned = _finetune(scaled_images, make_params, source, freeze="encoder", unfreeze_epoch=1)
    moved = [k for k, v in _features(source.state_dict).items() if not torch.equal(tuned.state_dict[k], v)]
    assert "features.0.weight" in moved
    # loaded, not drawn afresh: a tiny rate leaves them next to the source's, far from a fresh draw's
    slow = _finetune(scaled_images, make_params, source, lr=1e-6)
    scratch = fit(make_params(data=DIGITS, model=MODEL, train={**TRAIN, "lr": 1e-6}), scaled_images, n_outputs=3)
    weight = "features.0.weight"
    assert (slow.state_dict[weight] - source.state_dict[weight]).abs().max() < 1e-3
    assert (scratch.state_dict[weight] - source.state_dict[weight]).abs().max() > 1e-2


def test_another_number_of_classes_gets_a_fresh_head_and_says_so(scaled_images: Path, make_params: MakeParams,
                                                                 source: FitResult,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tuned = _finetune(scaled_images, make_params, source, n_outputs=2, freeze="encoder")
    assert tuned.state_dict["head.0.weight"].shape == (2, source.state_dict["head.0.weight"].shape[1])
    assert "train: train.init_from = models:/src/1: output layer head.0 made afresh (3 outputs in the source, 2 " \
           "here)" in capsys.readouterr().out


def test_an_architecture_params_yaml_does_not_share_is_refused_before_training(
        scaled_images: Path, make_params: MakeParams, source: FitResult) -> None:
    params = make_params(data=DIGITS, model={**MODEL, "cnn": {"channels": [4, 16]}}, train={**TRAIN, "init_from": 1})
    with pytest.raises(PipelineError) as caught:
        fit(params, scaled_images, n_outputs=3, parent=Parent("models:/src/1", source.spec, source.state_dict))
    assert str(caught.value) == ("train.init_from = models:/src/1: model.channels: source [4, 8], params.yaml [4, 16]; "
                                 "expected params.yaml to describe the source's architecture")


def test_a_checkpoint_belongs_to_one_parent(scaled_images: Path, make_params: MakeParams, source: FitResult) -> None:
    params = make_params(data=DIGITS, model=MODEL, train={**TRAIN, "init_from": "champion"})
    other = {k: v + 1 for k, v in source.state_dict.items()}
    marks = {fingerprint(params, scaled_images, 3, None, "classification", None, digest)
             for digest in (None, Parent("a", source.spec, source.state_dict).digest, Parent("a", source.spec, other).digest)}
    assert len(marks) == 3  # the same alias text, other weights: another training
    assert Parent("a", source.spec, source.state_dict).digest == Parent("b", {}, dict(source.state_dict)).digest


# the other kinds, each on its modality: a table's FNN (encoder: every layer but the output layer) and a sequence
# set's GRU (encoder: the recurrent layers; its dense head learns), fine-tuned from a source with other classes
OTHER_KINDS = {
    "fnn-table": ("table", {"train": 48, "val": 16}, {"source": "penguins", "target": "species"},
                  {"kind": "fnn", "hidden": [8, 8], "norm": "batch", "dropout": 0.0}, 3, None),
    "rnn-sequences": ("sequences", {},
                      {"source": "inputs/s.csv", "target": "y", "sequence": {"id": "sid", "time": "t"}},
                      {"kind": "rnn", "hidden": [4], "dropout": 0.0, "rnn": {"hidden_size": 8}}, 2, "recurrent."),
}


@pytest.mark.parametrize("case", OTHER_KINDS, ids=list(OTHER_KINDS))
def test_fnn_and_rnn_keep_their_frozen_encoder_and_grow_a_fresh_head(scaled_data: ScaledData, make_params: MakeParams,
                                                                    case: str) -> None:
    kind, options, data, model, classes, encoder = OTHER_KINDS[case]
    scaled = scaled_data(kind, **options)
    source = fit(make_params(seed=7, data=data, model=model, train=TRAIN), scaled, n_outputs=classes + 2)
    params = make_params(data=data, model=model, train={**TRAIN, "init_from": 1, "freeze": "encoder"})
    tuned = fit(params, scaled, n_outputs=classes, parent=Parent("models:/src/1", source.spec, source.state_dict))
    head = max(k for k in tuned.state_dict if k.endswith(".weight") and tuned.state_dict[k].dim() == 2
               and tuned.state_dict[k].shape[0] == classes)
    fresh = head.rsplit(".", 1)[0]
    kept = [k for k in source.state_dict if (k.startswith(encoder) if encoder else not k.startswith(f"{fresh}."))]
    assert kept and [k for k in kept if not torch.equal(tuned.state_dict[k], source.state_dict[k])] == []
    assert source.state_dict[head].shape[0] == classes + 2 and tuned.state_dict[head].shape[0] == classes


def test_the_lr_finder_of_a_fine_tuning_leaves_its_training_as_it_was(scaled_images: Path, make_params: MakeParams,
                                                                      source: FitResult) -> None:
    plain = _finetune(scaled_images, make_params, source, freeze="encoder", loaded_lr_factor=0.5)
    found = _finetune(scaled_images, make_params, source, freeze="encoder", loaded_lr_factor=0.5, lr_find=True)
    assert found.lr_finding is not None and found.lr_finding.suggestion in found.lr_finding.lrs
    assert all(torch.equal(found.state_dict[k], v) for k, v in plain.state_dict.items())
