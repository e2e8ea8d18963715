"""The command line: every command, action and option documented; ``--params`` before or after the command; the
``pipeline`` console script; ``summary`` printing evaluate's reports and refusing reports of another shape in one line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import COMMANDS, run
from pipeline.cli import parser
from pipeline.errors import PipelineError
from tests.factories import MakeParamsDoc
from tests.project import ROOT, env

METRICS = {"test": {"accuracy": 0.98551, "macro_f1": 0.9812,
                    "per_class": {"Adelie": {"precision": 1.0, "recall": 0.9667, "support": 30}}}}
MODEL = {"name": "penguins-fnn", "version": "3", "uri": "models:/penguins-fnn/3", "run_id": "abc123",
         "modality": "tabular"}


def _summary(folder: Path, metrics: object, model: object) -> subprocess.CompletedProcess[str]:
    reports = folder / "reports"
    reports.mkdir()
    (reports / "metrics.json").write_text(json.dumps(metrics))
    (reports / "model.json").write_text(json.dumps(model))
    return subprocess.run([sys.executable, "-m", "pipeline", "summary"], cwd=folder, capture_output=True, text=True,
                          check=False, env={**env(), "PYTHONPATH": str(ROOT)})


def test_summary_prints_the_test_metrics_and_how_to_predict(tmp_path: Path) -> None:
    done = _summary(tmp_path, METRICS, MODEL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  accuracy  0.9855" in lines and "  macro_f1  0.9812" in lines
    assert "  Adelie       precision 1.0000  recall 0.9667  (n=30)" in lines
    assert "Registered model: penguins-fnn version 3  (models:/penguins-fnn/3, run abc123)" in lines
    assert any(line.startswith("  predict:  .venv/bin/pipeline predict --model 3 --input rows.csv --output preds.csv")
               for line in lines), lines
    assert lines[-1] == "MLflow UI:  .venv/bin/pipeline ui   (then open http://127.0.0.1:5000)"


def test_the_summary_names_the_command_make_venv_installs() -> None:
    # the hints say .venv/bin/pipeline: true while pyproject names the script so and `make venv` installs the project
    assert "pipeline" in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "VENV := .venv" in makefile
    assert re.search(r"^\t\$\(BIN\)/python -m pip install .* (-e )?\.$", makefile, re.MULTILINE), makefile


@pytest.mark.parametrize(("metrics", "model", "file", "why"), [
    ({"val": {}}, MODEL, "metrics.json", "(KeyError: no key 'test')"),
    ({"test": {"accuracy": "high"}}, MODEL, "metrics.json",
     "(ValueError: Unknown format code 'f' for object of type 'str')"),
    (METRICS, {"name": "x"}, "model.json", "(KeyError: no key 'version')"),
], ids=["no test metrics", "text for a number", "no version"])
def test_summary_refuses_reports_of_another_shape_in_one_line(tmp_path: Path, metrics: object, model: object,
                                                              file: str, why: str) -> None:
    done = _summary(tmp_path, metrics, model)
    assert done.returncode == 1
    assert done.stdout == ""  # nothing printed before the refusal
    assert done.stderr == (f"pipeline: error: reports/{file}: expected the content the pipeline writes there, "
                           f"got content it cannot use {why}\n")


def _commands(command: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str | None]]]:
    """Each parser under ``command``, recursively: its path of command names, itself, and its subcommands' help."""
    listed: dict[str, str | None] = {}
    nested = []
    for action in command._actions:  # argparse offers no public walk over its parsers
        if isinstance(action, argparse._SubParsersAction):
            listed |= {choice.dest: choice.help for choice in action._choices_actions}
            nested += [((*path, name), sub) for name, sub in action.choices.items()]
    yield path, command, listed
    for sub_path, sub in nested:
        yield from _commands(sub, sub_path)


def test_every_command_action_and_option_has_help() -> None:
    walked = list(_commands(parser()))
    assert {" ".join(path) for path, _, _ in walked} == {
        "", "predict", "models", "models list", "models pin", "models show", "models reproduce", "runs",
        "runs cleanup", "summary", "ui", "preset", "server", "tune", "cv", "worker"}
    for path, command, listed in walked:
        where = " ".join(("pipeline", *path))
        assert command.description, f"{where}: no description"
        assert all(listed.values()), f"{where}: a subcommand without help in {listed}"
        for action in command._actions:
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"{where} {name}: no help"
            shown = action.default not in (None, False, argparse.SUPPRESS) and not action.required
            assert not shown or "default" in action.help, f"{where} {name}: help does not give the default"
        command.format_help()  # every %(default)s and %(prog)s in the help texts expands


def test_every_command_names_a_handler_that_exists() -> None:
    # the parser (pipeline.cli) names each command's handler as a string: a misspelt one would fail only when run
    handlers = {" ".join(path): command.get_default("handler")
                for path, command, listed in _commands(parser()) if path and not listed}
    assert all(handlers.values()), handlers
    assert set(handlers.values()) == set(COMMANDS), handlers


def test_the_top_level_help_lists_every_command() -> None:
    text = parser().format_help()
    for name in ("predict", "models", "runs", "summary", "ui", "preset", "server", "worker"):
        assert re.search(rf"^    {name} +\S", text, re.MULTILINE), (name, text)
        assert f"  pipeline {name}" in text, (name, text)  # an example of each


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "1", "--input", "rows.csv", "--output", "p.csv"], ["models", "list"],
    ["models", "pin", "3"], ["models", "show", "champion"], ["models", "reproduce", "3"], ["preset", "digits"],
], ids=lambda argv: " ".join(argv[:2]))
def test_params_is_read_before_or_after_the_command(argv: list[str]) -> None:
    assert parser().parse_args(argv).params == Path("params.yaml")
    assert parser().parse_args(["--params", "before.yaml", *argv]).params == Path("before.yaml")
    assert parser().parse_args([*argv, "--params", "after.yaml"]).params == Path("after.yaml")


def test_a_params_file_given_after_the_command_is_the_one_used(tmp_path: Path, make_params_doc: MakeParamsDoc) -> None:
    raw = make_params_doc(train={"lr": -1})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    command = ["preset", "digits", "--presets", str(ROOT / "presets.yaml")]
    refusal = re.escape(f"{bad} with preset 'digits': train.lr = -1")
    with pytest.raises(PipelineError, match=refusal):
        run([*command, "--params", str(bad)])
    with pytest.raises(PipelineError, match=refusal):  # the old place, before the command, still works
        run(["--params", str(bad), *command])
    run([*command, "--params", str(ROOT / "params.yaml")])  # valid params: the command prints and returns


# a params or presets file that cannot be read, and the one line that says so ({} is the path as given)
UNREADABLE = {
    "missing": (None, "{}: file not found (expected a {what} file)"),
    "a directory": ("", "{}: expected a {what} file, got a directory"),
    "invalid YAML": ("seed: 1\ntrain: [1, 2\n", "{}: expected valid YAML, got a syntax error (line 3, column 1: "
                                                  "expected ',' or ']', but got '<stream end>')"),
}
PARAMS_COMMANDS = {
    "predict": ["predict", "--model", "1", "--input", "rows.csv", "--output", "preds.csv"],
    "models list": ["models", "list"], "models pin": ["models", "pin", "3"], "models show": ["models", "show", "3"],
    "models reproduce": ["models", "reproduce", "3"], "preset": ["preset", "digits", "--presets", "presets.yaml"],
}


def _unreadable(folder: Path, fault: str) -> Path:
    """A file in ``folder`` with ``fault``: absent, a directory, or holding invalid YAML."""
    path = folder / "given.yaml"
    content = UNREADABLE[fault][0]
    if content == "":
        path.mkdir()
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("fault", sorted(UNREADABLE))
@pytest.mark.parametrize("command", sorted(PARAMS_COMMANDS))
def test_an_unreadable_params_file_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        command: str, fault: str) -> None:
    monkeypatch.chdir(tmp_path)  # no MLflow store here: the params file is read first, and refused
    (tmp_path / "rows.csv").write_text("bill_length_mm\n39.1\n", encoding="utf-8")
    (tmp_path / "presets.yaml").write_bytes((ROOT / "presets.yaml").read_bytes())
    params = _unreadable(tmp_path, fault)
    with pytest.raises(PipelineError) as caught:
        run([*PARAMS_COMMANDS[command], "--params", str(params)])
    assert str(caught.value) == UNREADABLE[fault][1].format(params, what="params")


@pytest.mark.parametrize("fault", sorted(UNREADABLE))
def test_an_unreadable_presets_file_is_named_in_one_line(tmp_path: Path, fault: str) -> None:
    presets = _unreadable(tmp_path, fault)
    with pytest.raises(PipelineError) as caught:
        run(["preset", "digits", "--presets", str(presets), "--params", str(ROOT / "params.yaml")])
    assert str(caught.value) == UNREADABLE[fault][1].format(presets, what="presets")


def test_a_missing_params_file_ends_the_command_with_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "preset", "digits", "--params", "missing.yaml",
                           "--presets", str(ROOT / "presets.yaml")], cwd=tmp_path, capture_output=True, text=True,
                          check=False, env={**env(), "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "pipeline: error: missing.yaml: file not found (expected a params file)\n"


def test_the_console_script_is_the_command_line(tmp_path: Path) -> None:
    target = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["pipeline"]
    module, attribute = target.split(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    # what pip's generated script does: import the entry point and exit with what it returns, argv[0] 'pipeline'
    script = f"import sys; from {module} import {attribute}; sys.argv[0] = 'pipeline'; sys.exit({attribute}())"

    def call(*argv: str, module_run: bool = False) -> subprocess.CompletedProcess[str]:
        start = ["-m", "pipeline"] if module_run else ["-c", script]
        return subprocess.run([sys.executable, *start, *argv], cwd=tmp_path, capture_output=True, text=True,
                              check=False, env={**env(), "PYTHONPATH": str(ROOT)})

    assert call("--help").stdout.startswith("usage: pipeline [-h]")
    assert call("--help", module_run=True).stdout.startswith("usage: python -m pipeline [-h]")
    refused = call("preset", "mnist", "--presets", str(ROOT / "presets.yaml"))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == ("pipeline: error: " + str(ROOT / "presets.yaml") + ": preset 'mnist': expected one of "
                              "['diabetes', 'digits', 'gunpoint', 'penguins']\n")
