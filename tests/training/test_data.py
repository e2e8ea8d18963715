"""Reading the scale stage's sequences: val and test series longer than every train series widen their batch for
nets of any length (RNN, CNN), and are refused, before any training, for the feed-forward net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import parse_params
from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.preprocess.encoders import Encoders
from pipeline.training.data import load_xy
from pipeline.training.fit import check_lengths, fit

ROOT = Path(__file__).resolve().parents[2]
LENGTHS = {"train": [5, 8, 12, 6, 9, 7, 10, 11, 5, 12, 8, 6], "val": [6, 20, 9, 7], "test": [25, 5, 8, 11]}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scaled long-format sequences of two features: the class is the sign of the features' mean; train's
    longest series has 12 steps, val holds one of 20 and test one of 25."""
    folder = tmp_path_factory.mktemp("scaled_sequences")
    rng = np.random.default_rng(0)
    for name, lengths in LENGTHS.items():
        parts = []
        for i, n in enumerate(lengths):
            label = i % 2
            values = rng.normal(loc=1.0 if label else -1.0, size=(n, 2)).astype("float32")
            parts.append(pd.DataFrame({"sid": f"{name}{i}", "a": values[:, 0], "b": values[:, 1], "y": label}))
        pd.concat(parts, ignore_index=True).to_parquet(folder / f"{name}.parquet", index=False)
    plain = Encoders.passthrough(["a", "b"], [0, 1])
    encoders = Encoders(plain.features, plain.target, {"series": "sid", "length": max(LENGTHS["train"])})
    write_json(folder / "encoder.json", encoders.to_dict())
    return folder


def _params(kind: str):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(source="inputs/s.csv", target="y", sequence={"id": "sid", "time": "t"})
    raw["model"].update(kind=kind, hidden=[])
    raw["model"]["cnn"].update(channels=[4])
    raw["model"]["rnn"].update(hidden_size=4)
    raw["train"].update(max_epochs=2, batch_size=4)
    return parse_params(raw)


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
def test_rnn_and_cnn_train_with_val_series_longer_than_every_train_series(scaled: Path, kind: str) -> None:
    params = _params(kind)
    check_lengths(params, scaled)  # nothing to refuse
    result = fit(params, scaled, n_outputs=2)
    assert result.spec["kind"] == kind and len(result.history) == 2
    assert np.isfinite(result.history[-1]["val/loss"])


def test_fnn_refuses_a_val_series_longer_than_every_train_series_before_training(scaled: Path) -> None:
    params = _params("fnn")
    with pytest.raises(PipelineError, match=r"series 'val1' has 20 steps; .*model\.kind: rnn or cnn"):
        check_lengths(params, scaled)  # what train calls before any MLflow run is opened
    with pytest.raises(PipelineError, match=r"val\.parquet: series 'val1' has 20 steps"):
        fit(params, scaled, n_outputs=2)
