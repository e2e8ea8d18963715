"""ingest: validate the loaded table, drop rows without a target, count (or drop) repeated rows, profile what was
seen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema
from pipeline.stages.ingest import ingest


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bill": [1.0, 2.0, 1.0, 3.0, 3.0, np.nan, np.nan, 4.0],
            "island": ["a", "b", "a", "a", "a", "b", "b", "a"],
            "species": ["A", "B", "A", None, None, "B", "B", "A"],
        }
    )
    # row 2 duplicates row 0; rows 3 and 4 have no target (and are identical); row 6 duplicates row 5


def test_ingest_keeps_repeated_rows_by_default_and_counts_them() -> None:
    kept, _, profile = ingest(_raw(), "species", "penguins")
    expected = pd.DataFrame({
        "bill": [1.0, 2.0, 1.0, np.nan, np.nan, 4.0], "island": ["a", "b", "a", "b", "b", "a"],
        "species": ["A", "B", "A", "B", "B", "A"],
    })
    pd.testing.assert_frame_equal(kept, expected, check_dtype=False)
    assert profile["rows_dropped_missing_target"] == 2
    assert profile["rows_dropped_duplicate"] == 0
    assert (profile["rows"], profile["duplicates"]) == (6, "keep")
    # rows 2 and 6 repeat rows 0 and 5 (two distinct rows); rows 3 and 4 had no target, so they are no copies
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (2, 2)
    assert profile["class_counts"] == {"A": 3, "B": 3}


def test_repeats_are_counted_per_distinct_row_and_judged_on_the_columns_kept() -> None:
    # the id column is left out (data.drop), so rows that differ only there are copies as split and the network see
    # them
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(8)], "sex": ["m", "m", "m", "f", "f", "f", "m", "f"],
                          "y": ["a", "a", "a", "b", "b", "a", "b", "a"]})
    kept, _, profile = ingest(frame, "y", drop=["id"])
    assert "id" not in kept.columns and len(kept) == 8
    # (m, a) x3, (f, b) x2, (f, a) x2, (m, b) x1: 2 + 1 + 1 repeats of 3 distinct rows
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (4, 3)
    _, _, dropped = ingest(frame, "y", drop=["id"], duplicates="drop")  # judged on the table as loaded: the ids differ
    assert (dropped["rows_dropped_duplicate"], dropped["rows"]) == (0, 8)


def test_group_keeps_rows_as_keep_does() -> None:
    kept, _, profile = ingest(_raw(), "species", duplicates="group")
    assert (len(kept), profile["rows_repeated"], profile["duplicates"]) == (6, 2, "group")


def test_ingest_drops_missing_targets_and_exact_duplicates_with_drop() -> None:
    kept, _, profile = ingest(_raw(), "species", "penguins", duplicates="drop")
    expected = pd.DataFrame(
        {"bill": [1.0, 2.0, np.nan, 4.0], "island": ["a", "b", "b", "a"], "species": ["A", "B", "B", "A"]}
    )
    pd.testing.assert_frame_equal(kept, expected, check_dtype=False)
    assert list(kept.index) == [0, 1, 2, 3]
    assert profile["rows_loaded"] == 8
    assert profile["rows_dropped_missing_target"] == 2  # rows without a target are not also counted as duplicates
    assert profile["rows_dropped_duplicate"] == 2
    assert profile["rows"] == 4
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (0, 0)  # none of the kept rows repeats
    assert profile["class_counts"] == {"A": 2, "B": 2}
    assert profile["source"] == "penguins"


def test_ingest_profiles_columns_and_infers_schema() -> None:
    _, schema, profile = ingest(_raw(), "species")
    assert schema == Schema("species", (("bill", "numeric"), ("island", "categorical")))
    columns = profile["columns"]
    assert list(columns) == ["bill", "island", "species"]
    assert columns["bill"] == {"dtype": "float64", "kind": "numeric", "missing": 2}  # row 5 and its copy, row 6
    assert (columns["island"]["kind"], columns["island"]["missing"]) == ("categorical", 0)
    assert (columns["species"]["kind"], columns["species"]["missing"]) == ("target", 0)


def test_ingest_keeps_a_clean_table_whole(tiny_frame: pd.DataFrame) -> None:
    kept, _, profile = ingest(tiny_frame, "species")
    pd.testing.assert_frame_equal(kept, tiny_frame)
    assert (profile["rows_dropped_missing_target"], profile["rows_dropped_duplicate"]) == (0, 0)
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (0, 0)
    assert profile["class_counts"] == {"Adelie": 4, "Chinstrap": 2, "Gentoo": 2}


def test_missing_target_column_names_data_target() -> None:
    with pytest.raises(PipelineError, match=r"data\.target = 'label'.*penguins"):
        ingest(_raw(), "label", "penguins")


def test_single_class_is_refused() -> None:
    frame = pd.DataFrame({"bill": [1.0, 2.0, 3.0], "species": ["A", "A", None]})
    with pytest.raises(PipelineError, match=r"'species'.*at least 2 classes.*\['A'\]"):
        ingest(frame, "species")


def test_table_without_features_is_refused() -> None:
    with pytest.raises(PipelineError, match="feature column"):
        ingest(pd.DataFrame({"species": ["A", "B"]}), "species")


def test_categorical_columns_become_text_with_blanks_missing() -> None:
    frame = pd.DataFrame({"y": ["a", "b", "a", "b"], "flag": [True, False, None, True], "where": ["x", " ", "y", "x"]})
    kept, schema, profile = ingest(frame, "y")
    assert dict(schema.features) == {"flag": "categorical", "where": "categorical"}
    assert kept["flag"].isna().tolist() == [False, False, True, False]
    assert kept["flag"].dropna().tolist() == ["True", "False", "True"]
    assert kept["where"].isna().tolist() == [False, True, False, False]
    assert kept["where"].dropna().tolist() == ["x", "y", "x"]
    assert profile["columns"]["where"]["missing"] == 1


def _customers() -> pd.DataFrame:
    n = 30
    return pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "signup": [f"2024-01-{i % 28 + 1:02d}" for i in range(n)],
        "plan": ["basic", "pro", "basic"] * 10,
        "spend": [float(i) for i in range(n)],
        "note": ["x"] * n,
        "churn": ["yes", "no"] * 15,
    })


def test_near_unique_text_is_left_out_and_iso_dates_are_kept_as_dates() -> None:
    kept, schema, profile = ingest(_customers(), "churn")
    assert "customer_id" not in kept.columns
    assert profile["columns_dropped"] == {"customer_id": "near-unique text (an identifier or free text), not a category"}
    assert dict(schema.features) == {"signup": "date", "plan": "categorical", "spend": "numeric", "note": "categorical"}
    assert schema.numeric == ["signup", "spend"]


def test_data_drop_leaves_columns_out_and_names_unknown_ones() -> None:
    kept, schema, profile = ingest(_customers(), "churn", drop=["note", "signup"])
    assert "note" not in kept.columns and "signup" not in kept.columns
    assert profile["columns_dropped"]["note"] == "listed in data.drop"
    with pytest.raises(PipelineError, match=r"data.drop: column\(s\) \['nope'\] not found in data"):
        ingest(_customers(), "churn", drop=["nope"])
    with pytest.raises(PipelineError, match="data.drop: 'churn' is data.target"):
        ingest(_customers(), "churn", drop=["churn"])


def test_a_short_table_keeps_distinct_names_as_categories() -> None:
    frame = pd.DataFrame({"name": ["a", "b", "c", "d"], "y": [0, 1, 0, 1]})
    _, schema, _ = ingest(frame, "y")
    assert dict(schema.features) == {"name": "categorical"}


def test_diabetes_is_read_offline_in_original_units_as_regression() -> None:
    from pipeline.sources import load

    kept, schema, profile = ingest(load("diabetes"), "progression", "diabetes")
    assert len(kept) == 442 and schema.feature_names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert schema.task == "regression" and profile["class_counts"] is None
    assert kept["age"].iloc[0] == 59 and kept["progression"].iloc[0] == 151.0  # raw units, not sklearn's scaled ones
    with pytest.raises(PipelineError, match="data.task = 'regression': column 'churn' in data: expected numbers"):
        ingest(_customers(), "churn", task="regression")
