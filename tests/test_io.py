"""pipeline.io: atomic writes leave nothing behind on failure; reads name the file on any bad content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, atomic_file, read_json, read_state, write_json


def test_read_state_builds_the_object(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, {"a": 1, "b": [2, 3]})
    assert read_state(path, lambda state: state["a"] + sum(state["b"])) == 6


@pytest.mark.parametrize(("content", "load", "expected"), [
    ({"other": 1}, lambda s: s["a"], "(KeyError: no key 'a')"),
    ([1, 2], lambda s: s["a"], "(TypeError: list indices must be integers or slices, not str)"),
    ({"a": "x"}, lambda s: float(s["a"]), "(ValueError: could not convert string to float: 'x')"),
    ({"a": None}, lambda s: s["a"].get("b"), "(AttributeError: 'NoneType' object has no attribute 'get')"),
], ids=["missing key", "list for object", "text for number", "null for object"])
def test_read_state_names_the_file_on_content_of_another_shape(tmp_path: Path, content: object, load: object,
                                                               expected: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PipelineError) as caught:
        read_state(path, load)
    message = str(caught.value)
    assert message.startswith(f"{path}: expected the content the pipeline writes there, got content it cannot use")
    assert message.endswith(expected), message


def test_read_state_prefixes_the_loaders_own_refusal_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"kind": "transformer"}')

    def load(spec: dict) -> None:
        raise PipelineError(f"model.kind: expected one of ['cnn', 'fnn', 'rnn'], got {spec['kind']!r}")

    with pytest.raises(PipelineError, match=rf"^{path}: model.kind: expected one of .*, got 'transformer'$"):
        read_state(path, load)


def test_read_json_names_a_missing_or_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/none.json: file not found"):
        read_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/bad.json: expected valid JSON, got a corrupt file"):
        read_json(tmp_path / "bad.json")


def test_atomic_file_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    final = tmp_path / "out.json"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert final.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_only_when_complete_and_sweeps_a_killed_writers_leftovers(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    (tmp_path / ".out.tmp-killed").mkdir()  # what a SIGKILLed writer leaves
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("writer failed")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
