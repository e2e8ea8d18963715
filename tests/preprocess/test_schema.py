"""Schema: column kinds, inference, and coercion of raw (CSV-like) rows to the dtypes ingest saw."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema, column_kind, detect, infer_task

SCHEMA = Schema("species", (("bill", "numeric"), ("year", "numeric"), ("island", "categorical")))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2, 3], "numeric"),
        ([1.5, np.nan, 2.0], "numeric"),
        ([True, False, True], "categorical"),
        (["a", "b", None], "categorical"),
        ([1, "a", 2.5], "categorical"),
    ],
    ids=["int", "float-with-nan", "bool", "str", "mixed-object"],
)
def test_column_kind(values: list, kind: str) -> None:
    assert column_kind(pd.Series(values)) == kind


def test_ingest_lists_features_in_column_order_without_target(tiny_frame: pd.DataFrame) -> None:
    from pipeline.stages.ingest import ingest

    schema = ingest(tiny_frame[["island", "species", "bill"]], "species")[1]
    assert schema == Schema("species", (("island", "categorical"), ("bill", "numeric")))
    assert schema.numeric == ["bill"]
    assert schema.categorical == ["island"]
    assert schema.feature_names == ["island", "bill"]


def test_schema_round_trips_through_json() -> None:
    assert Schema.from_dict(json.loads(json.dumps(SCHEMA.to_dict()))) == SCHEMA


def test_coerce_turns_csv_strings_into_floats_and_blanks_into_missing() -> None:
    raw = pd.DataFrame(
        {
            "species": ["Adelie", "Gentoo", "Adelie", "Gentoo", "Adelie"],
            "island": ["Biscoe", "Dream", "Biscoe", "Dream", "Biscoe"],
            "year": ["2007", "2008", "2009", "2007", " 2008 "],
            "bill": ["3.5", "", np.nan, " 41 ", "-2e1"],
        },
        index=[10, 11, 12, 13, 14],
    )
    out = SCHEMA.coerce(raw, "rows.csv")
    assert list(out.columns) == ["bill", "year", "island"]  # schema order; the target is dropped
    assert list(out.index) == [10, 11, 12, 13, 14]
    assert out["bill"].dtype == np.float64
    assert out["year"].dtype == np.float64
    np.testing.assert_array_equal(out["bill"].to_numpy(), [3.5, np.nan, np.nan, 41.0, -20.0])
    np.testing.assert_array_equal(out["year"].to_numpy(), [2007.0, 2008.0, 2009.0, 2007.0, 2008.0])


def test_coerce_makes_categorical_values_strings_and_keeps_missing_missing() -> None:
    raw = pd.DataFrame({"bill": [1.0, 2.0, 3.0, 4.0], "year": [2007, 2008, 2009, 2007], "island": [7, 2.5, None, True]})
    out = SCHEMA.coerce(raw, "rows")
    island = out["island"].tolist()
    assert island[0] == "7" and island[1] == "2.5" and island[3] == "True"
    assert all(isinstance(v, str) for i, v in enumerate(island) if i != 2)
    assert out["island"].isna().tolist() == [False, False, True, False]


def test_coerce_rejects_text_in_numeric_column_naming_column_and_value() -> None:
    raw = pd.DataFrame({"bill": ["3.5", "n/a", "4"], "year": ["2007", "2008", "2009"], "island": ["a", "b", "c"]})
    with pytest.raises(PipelineError) as caught:
        SCHEMA.coerce(raw, "rows.csv")
    message = str(caught.value)
    assert message.startswith("rows.csv: ")
    assert "'bill'" in message
    assert "'n/a'" in message


def test_coerce_rejects_a_missing_feature_column() -> None:
    raw = pd.DataFrame({"bill": [1.0], "species": ["Adelie"], "island": ["a"]})
    with pytest.raises(PipelineError, match=r"rows\.csv: missing feature column\(s\) \['year'\]"):
        SCHEMA.coerce(raw, "rows.csv")


def test_coerce_drops_extra_columns() -> None:
    raw = pd.DataFrame({"note": ["x"], "bill": [1.0], "species": ["Adelie"], "year": [2007], "island": ["a"]})
    assert list(SCHEMA.coerce(raw, "rows").columns) == ["bill", "year", "island"]


def test_coerce_treats_blank_categorical_cell_as_missing() -> None:
    raw = pd.DataFrame({"bill": ["1.0", "2.0"], "year": ["2007", "2008"], "island": ["Biscoe", ""]})
    assert SCHEMA.coerce(raw, "rows.csv")["island"].isna().tolist() == [False, True]


def test_detect_tells_dates_identifiers_and_categories_apart() -> None:
    assert detect(pd.Series(["2024-01-02", "2024-02-03 10:00", None])) == "date"
    assert detect(pd.Series(pd.to_datetime(["2020-01-01", "2020-06-01"]))) == "date"
    assert detect(pd.Series(["2007", "2008"] * 10)) == "categorical"  # years as text are not ISO dates
    assert detect(pd.Series([f"name{i}" for i in range(30)])) == "identifier"
    assert detect(pd.Series(["a", "b"] * 20)) == "categorical"
    assert detect(pd.Series([1, 2, 3])) == "numeric"


def test_coerce_turns_dates_into_days_since_1970_and_names_bad_values() -> None:
    schema = Schema("y", (("when", "date"),))
    days = schema.coerce(pd.DataFrame({"when": ["1970-01-02", "1970-01-01T12:00:00", "", "1970-01-01T02:00:00+02:00"]}), "rows")
    assert days["when"].isna().tolist() == [False, False, True, False]
    assert days["when"].dropna().tolist() == [1.0, 0.5, 0.0]  # 02:00 at +02:00 is midnight UTC
    with pytest.raises(PipelineError, match="rows.csv: column 'when': expected ISO dates, got 'yesterday'"):
        schema.coerce(pd.DataFrame({"when": ["yesterday"]}), "rows.csv")


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no", "yes"], "classification"),
        ([0, 1, 2, 1], "classification"),
        ([float(v) for v in range(25)], "regression"),  # more distinct whole numbers than MAX_CLASSES
        ([0.5, 1.0, 1.5], "regression"),  # fractions are quantities
    ],
)
def test_infer_task_from_target_values(values: list, task: str) -> None:
    inferred, reason = infer_task(pd.Series(values))
    assert inferred == task and reason
