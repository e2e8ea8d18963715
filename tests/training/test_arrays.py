"""Reading the scale stage's sequences as tensors: each split padded to its own longest series (never below
train's), or refused for a fixed-length net, naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.training.arrays import load_xy
from tests.factories import SEQUENCE_LENGTHS, ScaledData

LENGTHS = SEQUENCE_LENGTHS  # train's longest series: 12 steps; val holds one of 20, test one of 25


@pytest.fixture
def scaled(scaled_data: ScaledData) -> Path:
    """Scaled long-format sequences of two features: the class is the sign of the features' mean; train's
    longest series has 12 steps, val holds one of 20 and test one of 25."""
    return scaled_data("sequences", lengths=LENGTHS)


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
