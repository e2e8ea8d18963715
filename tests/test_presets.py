"""Presets: every entry of presets.yaml gives valid params, and the printed command is what DVC reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_params
from pipeline.errors import PipelineError
from pipeline.presets import dvc_set_args, load_presets, overlay, preset
from tests.factories import MakeParamsDoc

ROOT = Path(__file__).resolve().parents[1]
PRESETS = load_presets(ROOT / "presets.yaml")


def test_every_bundled_dataset_has_a_preset() -> None:
    assert set(PRESETS) == {"penguins", "diabetes", "digits", "gunpoint"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_gives_valid_params_for_its_dataset(name: str, make_params_doc: MakeParamsDoc) -> None:
    overrides = preset(name, ROOT / "params.yaml", ROOT / "presets.yaml")
    params = parse_params(overlay(make_params_doc(), overrides))
    assert params.data.source == name


def test_set_args_are_yaml_values_dvc_parses_back() -> None:
    args = dvc_set_args({"model.hidden": [], "model.cnn.channels": [64, 128], "model.dropout": 0.0,
                         "data.source": "digits", "model.bias": False, "split.time_column": None})
    assert args == ["-S", "model.hidden=[]", "-S", "model.cnn.channels=[64, 128]", "-S", "model.dropout=0.0",
                    "-S", "data.source=digits", "-S", "model.bias=false", "-S", "split.time_column=null"]
    for arg in args[1::2]:  # DVC reads the value after '=' as YAML
        key, value = arg.split("=", 1)
        assert yaml.safe_load(value) == {"model.hidden": [], "model.cnn.channels": [64, 128], "model.dropout": 0.0,
                                         "data.source": "digits", "model.bias": False, "split.time_column": None}[key]


def test_a_key_params_yaml_lacks_is_refused_by_name(make_params_doc: MakeParamsDoc) -> None:
    raw = make_params_doc()
    with pytest.raises(PipelineError, match=r"presets.yaml: train.learning_rate: expected a key that params.yaml has"):
        overlay(raw, {"train.learning_rate": 0.1})


def test_a_preset_with_a_bad_value_is_refused_naming_the_preset(tmp_path: Path) -> None:
    (tmp_path / "presets.yaml").write_text("bad:\n  train.lr: -1\n")
    with pytest.raises(PipelineError, match=r"with preset 'bad': train.lr = -1"):
        preset("bad", ROOT / "params.yaml", tmp_path / "presets.yaml")


def test_the_cli_prints_the_dvc_command_and_refuses_an_unknown_preset() -> None:
    run = [sys.executable, "-m", "pipeline", "preset"]
    # options before the lone -- are the command's own; everything after it goes to dvc untouched
    done = subprocess.run([*run, "digits", "--presets", "presets.yaml", "--", "--name", "d1"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ("dvc exp run -S data.source=digits -S data.target=digit -S model.kind=cnn "
                                   "-S 'model.hidden=[]' --name d1")
    stray = subprocess.run([sys.executable, "-m", "pipeline", "summary", "--", "x"], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    assert stray.returncode != 0 and "summary: expected no arguments after --, got x" in stray.stderr
    bad = subprocess.run([*run, "mnist"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip() == ("pipeline: error: presets.yaml: preset 'mnist': expected one of "
                                  "['diabetes', 'digits', 'gunpoint', 'penguins']")


def test_the_params_file_is_read_as_dvc_reads_it(tmp_path: Path) -> None:
    # YAML 1.2, as DVC: 1e-3 is a number (PyYAML's default, YAML 1.1, would read the text '1e-3' and refuse it)
    text = (ROOT / "params.yaml").read_text(encoding="utf-8").replace("lr: 0.01", "lr: 1e-3")
    assert "lr: 1e-3" in text
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    assert preset("digits", tmp_path / "params.yaml", ROOT / "presets.yaml") == PRESETS["digits"]


def test_a_params_file_that_is_not_a_mapping_is_refused_before_the_preset_is_laid_over_it(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("- seed\n- data\n", encoding="utf-8")
    with pytest.raises(PipelineError) as caught:
        preset("digits", tmp_path / "params.yaml", ROOT / "presets.yaml")
    assert str(caught.value) == f"{tmp_path / 'params.yaml'}: expected a mapping of sections, got list"
