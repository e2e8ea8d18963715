"""Reading the scale stage's sequences: val and test series longer than every train series widen their batch for
nets of any length (RNN, CNN), and are refused, before any training, for the feed-forward net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.training.data import load_xy
from pipeline.training.fit import check_lengths, fit
from tests.factories import SEQUENCE_LENGTHS, MakeParams, ScaledData

LENGTHS = SEQUENCE_LENGTHS  # train's longest series: 12 steps; val holds one of 20, test one of 25


@pytest.fixture
def scaled(scaled_data: ScaledData) -> Path:
    """Scaled long-format sequences of two features: the class is the sign of the features' mean; train's
    longest series has 12 steps, val holds one of 20 and test one of 25."""
    return scaled_data("sequences", lengths=LENGTHS)


# the params of this file's trainings: the sequences above, a tiny net (of the kind a test sets), two epochs
SEQUENCES = {"source": "inputs/s.csv", "target": "y", "sequence": {"id": "sid", "time": "t"}}
TINY_NET = {"hidden": [], "cnn": {"channels": [4]}, "rnn": {"hidden_size": 4}}
TRAIN = {"max_epochs": 2, "batch_size": 4}


def test_load_xy_pads_a_split_to_its_own_longest_series_where_that_is_longer_than_train(scaled: Path) -> None:
    shapes = {name: tuple(load_xy(scaled, name, "y")[0].shape) for name in LENGTHS}
    assert shapes == {"train": (12, 12, 3), "val": (4, 20, 3), "test": (4, 25, 3)}
    x, y = load_xy(scaled, "val", "y")
    assert x[:, :, -1].sum(dim=1).tolist() == LENGTHS["val"]  # the mask: every step there, none cut
    assert y.tolist() == [0, 1, 0, 1]


def test_load_xy_pads_to_a_given_length_but_never_below_the_longest_train_series(scaled: Path) -> None:
    assert load_xy(scaled, "train", "y", length=25)[0].shape == (12, 25, 3)  # one width with test, for baselines
    assert load_xy(scaled, "val", "y", length=3)[0].shape == (4, 20, 3)
    assert load_xy(scaled, "train", "y", length=3)[0].shape == (12, 12, 3)


def test_load_xy_with_a_fixed_length_refuses_a_longer_series_naming_the_file_and_the_way_out(scaled: Path) -> None:
    with pytest.raises(PipelineError) as info:
        load_xy(scaled, "val", "y", fixed=True)
    message = str(info.value)
    assert message.startswith(f"{scaled / 'val.parquet'}: series 'val1' has 20 steps; expected at most 12")
    assert "model.kind: rnn or cnn" in message
    assert load_xy(scaled, "train", "y", fixed=True)[0].shape == (12, 12, 3)


@pytest.mark.parametrize("kind", ["rnn", "cnn"])
def test_rnn_and_cnn_train_with_val_series_longer_than_every_train_series(scaled: Path, make_params: MakeParams,
                                                                          kind: str) -> None:
    params = make_params(data=SEQUENCES, model={**TINY_NET, "kind": kind}, train=TRAIN)
    check_lengths(params, scaled)  # nothing to refuse
    result = fit(params, scaled, n_outputs=2)
    assert result.spec["kind"] == kind and len(result.history) == 2
    assert np.isfinite(result.history[-1]["val/loss"])


def test_fnn_refuses_a_val_series_longer_than_every_train_series_before_training(scaled: Path,
                                                                                 make_params: MakeParams) -> None:
    params = make_params(data=SEQUENCES, model={**TINY_NET, "kind": "fnn"}, train=TRAIN)
    with pytest.raises(PipelineError, match=r"series 'val1' has 20 steps; .*model\.kind: rnn or cnn"):
        check_lengths(params, scaled)  # what train calls before any MLflow run is opened
    with pytest.raises(PipelineError, match=r"val\.parquet: series 'val1' has 20 steps"):
        fit(params, scaled, n_outputs=2)
