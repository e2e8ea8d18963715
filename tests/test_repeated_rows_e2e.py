"""End to end: a table of few, coarse columns, where most rows repeat an earlier one, through a real `dvc repro`.

Such rows are different people who happen to share sex, class and age band: every one is kept and counted, the
split draws them as separate examples (so the test rows' combinations are mostly ones train has seen, as new
people's would be), and the network does at least as well as predicting the majority class. With
``data.duplicates: group`` rows with the same inputs share one part instead, so no test row has a copy in train.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.project import dvc, make_project, set_params, stages_run

pytestmark = pytest.mark.slow
ROWS = 1300
INPUTS = ["sex", "cls", "age"]


def _people(seed: int = 0) -> pd.DataFrame:
    """1,300 people described by 3 coarse columns (18 combinations); the label depends on all three."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sex": rng.choice(["female", "male"], ROWS, p=[0.36, 0.64]),
        "cls": rng.choice([1, 2, 3], ROWS, p=[0.25, 0.2, 0.55]),
        "age": rng.choice(["child", "adult", "old"], ROWS, p=[0.1, 0.75, 0.15]),
    })
    logit = (-1.2 + 2.5 * (frame["sex"] == "female") + 1.0 * (frame["cls"] == 1) - 0.8 * (frame["cls"] == 3)
             + 1.0 * (frame["age"] == "child") - 0.5 * (frame["age"] == "old"))
    frame["survived"] = np.where(rng.random(ROWS) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


def _rows(frame: pd.DataFrame, columns: list[str]) -> set[tuple]:
    return set(frame[columns].astype(str).itertuples(index=False, name=None))


def _parts(project: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(project / "data" / "split" / f"{name}.parquet") for name in ("train", "val", "test")}


def test_repeated_rows_are_kept_split_and_learned_from(tmp_path: Path) -> None:
    people = _people()
    assert len(people.drop_duplicates()) <= 36  # almost every row repeats an earlier one
    project = make_project(tmp_path, data__source="inputs/people.csv", data__target="survived",
                           train__max_epochs=40, train__early_stopping__patience=8, evaluate__baselines=["dummy"])
    people.to_csv(project / "inputs" / "people.csv", index=False)
    done = dvc(project, "repro")
    assert stages_run(done.stdout) == {"ingest", "split", "clean", "scale", "train", "evaluate"}, done.stdout

    profile = json.loads((project / "data" / "raw" / "profile.json").read_text())
    counts = people.value_counts()
    assert (profile["rows"], profile["rows_dropped_duplicate"], profile["duplicates"]) == (ROWS, 0, "keep")
    # every row beyond the first of its kind repeats one; the groups are the distinct rows seen more than once
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (ROWS - len(counts), int((counts > 1).sum()))
    distinct = len(counts)
    assert f"{ROWS - distinct} repeated rows kept" in done.stdout
    parts = _parts(project)
    assert sum(len(part) for part in parts.values()) == ROWS  # every row in exactly one part
    split_people = pd.concat(parts.values()).astype(str).value_counts().sort_index()
    assert split_people.equals(people.astype(str).value_counts().sort_index())  # and as many copies as were read
    # separate examples: the test rows' combinations are ones train has seen too
    assert _rows(parts["test"], INPUTS) <= _rows(parts["train"], INPUTS)

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    majority = metrics["baselines"]["dummy"]["accuracy"]
    # clearly above it: the label is learnable from the three columns (the true rule scores about 0.73 here)
    assert metrics["test"]["accuracy"] >= majority + 0.05, (metrics["test"]["accuracy"], majority)

    set_params(project, data__duplicates="group")
    grouped = dvc(project, "repro", "split")
    assert {"ingest", "split"} <= stages_run(grouped.stdout), grouped.stdout
    parts = _parts(project)
    assert sum(len(part) for part in parts.values()) == ROWS
    assert not _rows(parts["test"], INPUTS) & _rows(parts["train"], INPUTS)
    assert not _rows(parts["test"], [*INPUTS, "survived"]) & _rows(parts["train"], [*INPUTS, "survived"])
