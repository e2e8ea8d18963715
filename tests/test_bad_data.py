"""Bad user data through the real ingest process: exit 1, one line naming the file or column, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project import churn_csv, make_project, run

GOOD = churn_csv()
CASES = {
    "missing-file": (None, "inputs/data.csv", "data.source = 'inputs/data.csv': file not found"),
    "empty-file": ("", "inputs/data.csv", "inputs/data.csv: expected a header row and data rows, got an empty file"),
    "header-only": ("a,b,churned\n", "inputs/data.csv", "inputs/data.csv: expected at least one data row, got only the header"),
    "duplicate-columns": ("a,a,churned\n1,2,yes\n", "inputs/data.csv", "duplicate column name(s) ['a']"),
    "corrupt-parquet": ("PAR1 this is not parquet", "inputs/data.parquet", "inputs/data.parquet: expected a Parquet file"),
    "unknown-format": ("a,churned\n1,yes\n", "inputs/data.txt", "data.source = 'inputs/data.txt': expected one of"),
    "outside-inputs": ("a,churned\n1,yes\n", "data.csv", "data.source = 'data.csv': expected one of"),
    "climbs-out": ("a,churned\n1,yes\n", "inputs/../data.csv", "data.source = 'inputs/../data.csv': expected one of"),
    "missing-target": ("a,b\n1,2\n3,4\n", "inputs/data.csv", "data.target = 'churned': column not found in inputs/data.csv"),
    "target-all-missing": ("a,churned\n1,\n2,\n", "inputs/data.csv", "column 'churned': expected some rows with a target, got none of 2"),
    "single-class": ("a,churned\n1,yes\n2,yes\n", "inputs/data.csv", "column 'churned': expected at least 2 classes, got ['yes']"),
    "infinity": ("a,churned\n1,yes\ninf,no\n", "inputs/data.csv", "column(s) ['a'] hold +/-inf; expected finite numbers"),
    "unknown-drop": (GOOD, "inputs/data.csv", "data.drop: column(s) ['nope'] not found in inputs/data.csv"),
}


@pytest.mark.parametrize(("content", "source", "expected"), CASES.values(), ids=CASES.keys())
def test_bad_data_stops_ingest_with_one_line(tmp_path: Path, content: str | None, source: str, expected: str) -> None:
    drop = ["nope"] if "nope" in expected else []
    project = make_project(tmp_path, data__source=source, data__target="churned", data__drop=drop)
    if content is not None:
        (project / source).parent.mkdir(parents=True, exist_ok=True)
        (project / source).write_text(content)
    done = run(["python", "-m", "pipeline.stages.ingest", "--out", "data/raw"], project, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ingest: error: ") and expected in line, line
    assert not (project / "data").exists()


def test_a_users_csv_is_profiled_with_ids_left_out_and_dates_as_numbers(tmp_path: Path) -> None:
    project = make_project(tmp_path, data__source="inputs/churn.csv", data__target="churned")
    (project / "inputs" / "churn.csv").write_text(GOOD)
    done = run(["python", "-m", "pipeline.stages.ingest", "--out", "data/raw"], project)
    assert "task classification (the target holds str labels)" in done.stdout
    assert "left out 'id': near-unique text" in done.stdout
    assert "dates as days since 1970-01-01: ['when']" in done.stdout
