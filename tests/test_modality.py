"""modality: per-modality labels, unit word, id columns, arrays beside tables, padding, chosen once from the schema."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.modality import MODALITIES, Images, Sequences, Table, for_schema, write_arrays
from pipeline.preprocess.schema import Modality as ModalityName, Schema

TABLE = Schema("y", (("x", "numeric"), ("c", "categorical")), "classification")
IMAGES = Schema("y", (), "classification", "image", image_shape=(1, 2, 2))
SEQUENCES = Schema("y", (("x", "numeric"),), "classification", "sequence", "sid", "t")


def _rows() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"], "y": ["no", "yes", "no"]})


def _long() -> pd.DataFrame:
    """Series ``b`` (3 steps, label B) first, then ``a`` (2 steps, label A); rows already ordered."""
    return pd.DataFrame({"sid": ["b", "b", "b", "a", "a"], "t": [0, 1, 2, 0, 1],
                         "x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": ["B", "B", "B", "A", "A"]})


# choosing one from the schema


@pytest.mark.parametrize(("schema", "kind", "unit"), [(TABLE, Table, "rows"), (IMAGES, Images, "images"),
                                                      (SEQUENCES, Sequences, "series")])
def test_for_schema_picks_the_modality_with_its_unit_word(schema: Schema, kind: type, unit: str) -> None:
    modality = for_schema(schema)
    assert type(modality) is kind and modality.name == schema.modality and modality.unit == unit
    assert modality.target == "y"


def test_every_modality_a_schema_can_name_has_an_object() -> None:
    assert sorted(MODALITIES) == sorted(typing.get_args(ModalityName))


def test_only_sequences_carry_series_columns_and_go_by_series() -> None:
    assert (for_schema(SEQUENCES).series, for_schema(SEQUENCES).time) == ("sid", "t")
    # a table schema that happens to hold a series column still reads row by row
    stray = Schema("y", (("x", "numeric"),), "classification", "tabular", "sid", "t")
    assert for_schema(stray).series is None and for_schema(stray).id_columns == ()
    assert [k.by_series for k in (Table, Images, Sequences)] == [False, False, True]
    assert [k.arrays for k in (Table, Images, Sequences)] == [False, True, False]


# labels


def test_table_and_image_labels_are_the_target_row_for_row() -> None:
    for schema in (TABLE, IMAGES):
        labels = for_schema(schema).labels(_rows())
        assert labels.tolist() == ["no", "yes", "no"] and labels.index.tolist() == [0, 1, 2]


def test_sequence_labels_are_one_per_series_in_order_of_first_appearance() -> None:
    labels = for_schema(SEQUENCES).labels(_long())
    assert labels.to_dict() == {"b": "B", "a": "A"} and labels.index.tolist() == ["b", "a"]


def test_align_orders_sequence_labels_as_the_predictions_and_leaves_rows_alone() -> None:
    series = for_schema(SEQUENCES)
    assert series.align(series.labels(_long()), pd.Index(["a", "b"])).tolist() == ["A", "B"]
    rows = for_schema(TABLE)
    labels = rows.labels(_rows())
    assert rows.align(labels, pd.RangeIndex(3)) is labels


# id columns


def test_with_ids_puts_the_series_and_time_before_the_features() -> None:
    frame = _long()
    out = for_schema(SEQUENCES).with_ids(frame[["x"]].copy(), frame)
    assert list(out.columns) == ["sid", "t", "x"] and out["t"].tolist() == [0, 1, 2, 0, 1]


def test_with_ids_leaves_a_table_as_it_is() -> None:
    out = for_schema(TABLE).with_ids(_rows()[["x", "c"]].copy(), _rows())
    assert list(out.columns) == ["x", "c"]


# arrays beside the tables


def test_images_are_read_back_as_written_and_tables_have_no_arrays(tmp_path: Path) -> None:
    arrays = {name: np.full((2, 1, 2, 2), i, dtype="float32") for i, name in enumerate(("train", "val", "test"))}
    write_arrays(tmp_path, arrays)
    back = for_schema(IMAGES).read_arrays(tmp_path, ("train", "val", "test"))
    assert back is not None and {name: float(a.mean()) for name, a in back.items()} == {"train": 0, "val": 1, "test": 2}
    assert for_schema(IMAGES).read_array(tmp_path, "val").shape == (2, 1, 2, 2)
    # the same folder read as a table or as sequences: the inputs are columns, whatever files lie there
    for schema in (TABLE, SEQUENCES):
        assert for_schema(schema).read_arrays(tmp_path, ("train",)) is None
        assert for_schema(schema).read_array(tmp_path, "train") is None


def test_reading_images_that_are_not_there_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"test\.npy: file not found"):
        for_schema(IMAGES).read_array(tmp_path, "test")


def test_write_arrays_writes_nothing_for_columns(tmp_path: Path) -> None:
    write_arrays(tmp_path, None)
    assert list(tmp_path.iterdir()) == []


# padding


def test_steps_are_the_longest_train_series_and_none_for_rows() -> None:
    assert for_schema(SEQUENCES).steps(_long()) == {"series": "sid", "length": 3}
    assert for_schema(TABLE).steps(_rows()) is None


def test_scaled_table_inputs_are_every_column_but_the_target() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5], "y": [0, 1]})
    x = for_schema(TABLE).scaled_inputs(Path("scaled"), "train", frame)
    assert x.dtype == np.float32 and x.tolist() == [[1.0, 0.5], [2.0, 1.5]]


def test_scaled_sequences_are_padded_with_a_mask_to_the_steps_asked() -> None:
    frame = _long().drop(columns=["t"])
    x = for_schema(SEQUENCES).scaled_inputs(Path("scaled"), "val", frame, steps=4)
    assert x.shape == (2, 4, 2)
    assert x[0, :, 0].tolist() == [1.0, 2.0, 3.0, 0.0] and x[0, :, 1].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert x[1, :, 0].tolist() == [4.0, 5.0, 0.0, 0.0] and x[1, :, 1].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_a_fixed_length_refuses_a_longer_series_naming_the_split_file() -> None:
    frame = _long().drop(columns=["t"])
    with pytest.raises(PipelineError, match=r"scaled/val\.parquet: series 'b' has 3 steps; expected at most 2"):
        for_schema(SEQUENCES).scaled_inputs(Path("scaled"), "val", frame, steps=2, fixed=True)


def test_scaled_images_come_from_the_split_array(tmp_path: Path) -> None:
    write_arrays(tmp_path, {"test": np.arange(8, dtype="float32").reshape(2, 1, 2, 2)})
    x = for_schema(IMAGES).scaled_inputs(tmp_path, "test", pd.DataFrame({"y": [0, 1]}))
    assert x.shape == (2, 1, 2, 2) and float(x[1].sum()) == 4 + 5 + 6 + 7
