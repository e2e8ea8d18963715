"""Training on the scale stage's sequences: val series longer than every train series widen their batch for nets
of any length (RNN, CNN), and are refused, before any training, for the feed-forward net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import PipelineError
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
