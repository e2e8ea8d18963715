"""Bad sequence and image inputs through the real stage processes: exit 1, one line naming the file, column,
series or array and what was expected, and no output folder written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.project import make_project, run

SEQUENCE = {"data__sequence__id": "series", "data__sequence__time": "step", "data__target": "label"}
IMAGES = {"data__target": "y"}


def _long(rows: list[tuple]) -> str:
    return "series,step,x,label\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)


def _good_long(n_series: int = 12, steps: int = 4) -> list[tuple]:
    return [(f"s{i}", t, i + t / 10, "up" if i % 2 else "down") for i in range(n_series) for t in range(steps)]


def _write_text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _write_npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as stream:
            np.savez(stream, **arrays)
    return write


RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 5, 5)).astype("float32")
Y = np.array([0, 1] * 10)
NAN_X = X.copy()
NAN_X[3, 2, 2] = np.nan
RAGGED = np.empty(2, dtype=object)
RAGGED[0], RAGGED[1] = np.zeros((5, 5)), np.zeros((6, 6))

# id: (file under inputs/, writer, params overrides, stage to run, expected fragment of the one error line)
CASES: dict[str, tuple[str, Callable[[Path], None], dict, str, str]] = {
    "label-changes-within-series": (
        "inputs/seq.csv", _write_text(_long(_good_long() + [("s0", 9, 0.5, "up")])), SEQUENCE, "ingest",
        "column 'label': label changes within series 's0' (values ['down', 'up']); expected one label per series",
    ),
    "series-with-one-step": (
        "inputs/seq.csv", _write_text(_long(_good_long() + [("lonely", 0, 1.0, "up")])), SEQUENCE, "ingest",
        "series 'lonely' has 1 time step; expected at least 2 per series",
    ),
    "repeated-time-step": (
        "inputs/seq.csv", _write_text(_long(_good_long() + [("s1", 2, 99.0, "up")])), SEQUENCE, "ingest",
        "series 's1' has time 2 on more than one row with different values",
    ),
    "missing-series-column": (
        "inputs/seq.csv", _write_text(_long(_good_long())), {**SEQUENCE, "data__sequence__id": "device"}, "ingest",
        "data.sequence.id = 'device': column not found in inputs/seq.csv",
    ),
    "bad-time-value": (
        "inputs/seq.csv", _write_text(_long(_good_long() + [("s1", "soon", 1.0, "up")])), SEQUENCE, "ingest",
        "column 'step': expected numbers or ISO dates to order steps, got 'soon'",
    ),
    "non-numeric-in-declared-numeric-column": (
        "inputs/seq.csv", _write_text(_long(_good_long()).replace("s3,2,3.2,", "s3,2,3.2.1,")),
        {**SEQUENCE, "data__numeric": ["x"]}, "ingest",
        "inputs/seq.csv: column 'x' (data.numeric): expected numbers, got '3.2.1' in data row 15",
    ),
    "images-of-inconsistent-shapes": (
        "inputs/img.npz", _write_npz(x=RAGGED, y=np.array([0, 1])), IMAGES, "ingest",
        "inputs/img.npz: array 'x': expected a numeric array, got one that needs pickle to load (images of different",
    ),
    "labels-do-not-match-images": (
        "inputs/img.npz", _write_npz(x=X, y=Y[:7]), IMAGES, "ingest",
        "inputs/img.npz: array 'y': expected one label per image, shape (20,), got shape (7,)",
    ),
    "image-array-missing": (
        "inputs/img.npz", _write_npz(images=X, y=Y), IMAGES, "ingest",
        "inputs/img.npz: missing array(s) ['x']; expected 'x' (the images) and 'y' (data.target)",
    ),
    "non-finite-pixel": (
        "inputs/img.npz", _write_npz(x=NAN_X, y=Y), IMAGES, "ingest",
        "array 'x': expected finite pixel values, got NaN or +/-inf in 1 image(s), first at index 3",
    ),
    "flat-image-array": (
        "inputs/img.npz", _write_npz(x=X.reshape(20, 25), y=Y), IMAGES, "ingest",
        "array 'x': expected N x H x W or N x C x H x W images, got shape (20, 25)",
    ),
    "corrupt-npz": (
        "inputs/img.npz", _write_text("PK\x03\x04 not really a zip"), IMAGES, "ingest",
        "inputs/img.npz: expected an .npz archive of arrays, got an unreadable file",
    ),
    "time-split-leaves-a-class-out-of-train": (
        "inputs/seq.csv",
        _write_text(_long(_good_long(10) + [(f"late{i}", t + 100, 1.0, "rare") for i in range(3) for t in range(4)])),
        {**SEQUENCE, "split__method": "time"}, "split",
        "split.method = 'time': class(es) ['rare'] occur only after the train period; expected every class in train",
    ),
}
COMMANDS = {
    "ingest": ["--out", "data/raw"],
    "split": ["--raw", "data/raw", "--out", "data/split"],
    "clean": ["--raw", "data/raw", "--split", "data/split", "--out", "data/clean"],
}
BEFORE = {"ingest": [], "split": ["ingest"], "clean": ["ingest", "split"]}


@pytest.mark.parametrize(("source", "write", "overrides", "stage", "expected"), CASES.values(), ids=CASES.keys())
def test_bad_sequence_or_image_input_stops_the_stage_with_one_line(
    tmp_path: Path, source: str, write: Callable[[Path], None], overrides: dict, stage: str, expected: str
) -> None:
    project = make_project(tmp_path, data__source=source, **overrides)
    (project / source).parent.mkdir(parents=True, exist_ok=True)
    write(project / source)
    for earlier in BEFORE[stage]:
        run(["python", "-m", f"pipeline.stages.{earlier}", *COMMANDS[earlier]], project)
    done = run(["python", "-m", f"pipeline.stages.{stage}", *COMMANDS[stage]], project, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"{stage}: error: ") and expected in line, line
    out = COMMANDS[stage][-1]
    assert not (project / out).exists()
    assert not list((project / "data").glob(".*.tmp-*"))


def test_ffill_on_a_table_is_refused_naming_the_key(tmp_path: Path) -> None:
    project = make_project(tmp_path, clean__numeric="ffill")
    done = run(["python", "-m", "pipeline.stages.ingest", "--out", "data/raw"], project, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "ingest: error: params.yaml: clean.numeric = 'ffill' with tabular data: expected one of ('mean', 'median', "
        "'most_frequent', 'constant', 'knn') (filling along time needs data.sequence)"
    )
