"""Images through load, ingest, split and clean: arrays stay row for row with their labels.

Most images here carry their identity in their pixels (pixel [0, 0, 0] is the row number, pixel [0, 0, 1] the
label), so a test can tell which original image ended up where after the stages cut and resample the arrays.
"""

from __future__ import annotations

import functools
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.config import parse_params
from pipeline.errors import PipelineError
from pipeline.preprocess.schema import Schema
from pipeline.sources import load_images
from pipeline.stages.clean import clean_images
from pipeline.stages.ingest import ingest_images
from pipeline.stages.split import split_any
from tests.factories import MakeCleanConfig, MakeParams

SHAPE = (1, 2, 3)  # C x H x W of the hand-made images


def _images(labels: list[int] | np.ndarray, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """float32 images whose pixel [0, 0, 0] is the row number and pixel [0, 0, 1] the label; the rest is noise."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(len(labels), *shape)).astype("float32")
    x[:, 0, 0, 0] = np.arange(len(labels))
    x[:, 0, 0, 1] = np.asarray(labels, dtype="float32")
    return x


def _ids(x: np.ndarray) -> list[int]:
    return x[:, 0, 0, 0].astype(int).tolist()


def _one_line(exc: pytest.ExceptionInfo[PipelineError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- load_images ------------------------------------------------------------------------------------------------


def _write_npz(path: Path, **arrays: Any) -> str:
    np.savez(path, **arrays)
    return path.name


def test_n_h_w_images_get_a_channel_axis(tmp_path: Path) -> None:
    x = np.arange(3 * 4 * 5, dtype="float64").reshape(3, 4, 5)
    name = _write_npz(tmp_path / "img.npz", x=x, label=np.array([0, 1, 0]))
    images, labels = load_images(name, "label", tmp_path)
    assert images.shape == (3, 1, 4, 5)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images[:, 0], x)
    assert labels.tolist() == [0, 1, 0]


def test_n_c_h_w_images_are_kept_as_they_are(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 4 * 4, dtype="uint8").reshape(2, 3, 4, 4)
    name = _write_npz(tmp_path / "rgb.npz", x=x, y=np.array(["cat", "dog"]))
    images, labels = load_images(name, "y", tmp_path)
    assert images.shape == (2, 3, 4, 4) and images.dtype == np.float32
    np.testing.assert_array_equal(images, x.astype("float32"))
    assert labels.tolist() == ["cat", "dog"]


def _ragged() -> np.ndarray:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((2, 2)), np.zeros((3, 3))
    return ragged


BAD_NPZ: dict[str, tuple[Any, str]] = {
    # case: (what to write to bad.npz, a pattern for the whole message)
    "missing-file": (None, r"^data\.source = 'bad\.npz': file not found at .*bad\.npz$"),
    "empty-file": (b"", r"^bad\.npz: expected data, got an empty file$"),
    "random-bytes": (
        np.random.default_rng(0).bytes(300),
        r"^bad\.npz: expected an \.npz archive of arrays, got an unreadable file \(.+\)$",
    ),
    "truncated-zip": ("truncated", r"^bad\.npz: expected an \.npz archive of arrays, got an unreadable file \(.+\)$"),
    "single-npy": ("npy", r"^bad\.npz: expected an \.npz archive with .*'x'.*'y'.*, got a single array$"),
    "no-x": (
        {"images": np.zeros((3, 2, 2)), "y": np.array([0, 1, 0])},
        r"^bad\.npz: missing array\(s\) \['x'\]; expected 'x' \(the images\) and 'y' \(data\.target\), "
        r"got \['images', 'y'\]$",
    ),
    "no-target": (
        {"x": np.zeros((3, 2, 2)), "label": np.array([0, 1, 0])},
        r"^bad\.npz: missing array\(s\) \['y'\]; expected 'x' \(the images\) and 'y' \(data\.target\), "
        r"got \['x', 'label'\]$",
    ),
    "x-of-2-dims": (
        {"x": np.zeros((3, 20)), "y": np.array([0, 1, 0])},
        r"^bad\.npz: array 'x': expected N x H x W or N x C x H x W images, got shape \(3, 20\)$",
    ),
    "x-of-5-dims": (
        {"x": np.zeros((3, 1, 1, 2, 2)), "y": np.array([0, 1, 0])},
        r"^bad\.npz: array 'x': expected N x H x W or N x C x H x W images, got shape \(3, 1, 1, 2, 2\)$",
    ),
    "labels-of-wrong-length": (
        {"x": np.zeros((3, 2, 2)), "y": np.array([0, 1])},
        r"^bad\.npz: array 'y': expected one label per image, shape \(3,\), got shape \(2,\)$",
    ),
    "labels-of-2-dims": (
        {"x": np.zeros((3, 2, 2)), "y": np.zeros((3, 1))},
        r"^bad\.npz: array 'y': expected one label per image, shape \(3,\), got shape \(3, 1\)$",
    ),
    "images-of-inconsistent-shapes": (
        {"x": _ragged(), "y": np.array([0, 1])},
        r"^bad\.npz: array 'x': expected a numeric array, got one that needs pickle to load \(images of different shapes "
        r"saved together\?\)",
    ),
    "text-pixels": (
        {"x": np.full((3, 2, 2), "a"), "y": np.array([0, 1, 0])},
        r"^bad\.npz: array 'x': expected numbers, got dtype <U1$",
    ),
    "no-images": (
        {"x": np.zeros((0, 2, 2)), "y": np.zeros(0)},
        r"^bad\.npz: expected at least one image, got none$",
    ),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_is_refused_with_one_line(tmp_path: Path, case: str) -> None:
    content, expected = BAD_NPZ[case]
    path = tmp_path / "bad.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        np.savez(path, **content)  # allow_pickle is on by default, so the ragged object array is written
    elif content == "truncated":
        np.savez(path, x=np.zeros((3, 4, 4)), y=np.array([0, 1, 0]))
        path.write_bytes(path.read_bytes()[:200])
    elif content == "npy":
        with open(path, "wb") as stream:
            np.save(stream, np.zeros((3, 2, 2)))
    with pytest.raises(PipelineError) as info:
        load_images("bad.npz", "y", tmp_path)
    assert re.search(expected, _one_line(info)), str(info.value)


def test_a_damaged_member_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.arange(3 * 8 * 8, dtype="float64").reshape(3, 8, 8), y=np.array([0, 1, 0]))
    damaged = bytearray(path.read_bytes())
    damaged[damaged.find(b"NUMPY") + 300] ^= 0xFF  # a pixel byte of x.npy: the zip's CRC no longer matches
    path.write_bytes(bytes(damaged))
    with pytest.raises(PipelineError, match=r"^bad\.npz: expected a readable \.npz archive \(Bad CRC-32 .*x\.npy"):
        load_images("bad.npz", "y", tmp_path)


def _zip_with_x(path: Path, member: bytes) -> None:
    """A zip named .npz whose 'x.npy' member is ``member`` and whose 'y.npy' is a proper array."""
    labels = io.BytesIO()
    np.save(labels, np.array([0, 1]))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", member)
        archive.writestr("y.npy", labels.getvalue())


def test_a_member_that_is_not_an_npy_array_is_refused(tmp_path: Path) -> None:
    _zip_with_x(tmp_path / "bad.npz", b"0,1,2\n3,4,5\n")  # someone zipped a CSV as x.npy
    with pytest.raises(PipelineError, match=r"^bad\.npz: .*'x'.*expected"):
        load_images("bad.npz", "y", tmp_path)


def test_a_member_with_a_damaged_header_is_not_blamed_on_pickle(tmp_path: Path) -> None:
    _zip_with_x(tmp_path / "bad.npz", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(PipelineError) as info:
        load_images("bad.npz", "y", tmp_path)
    assert str(info.value).startswith("bad.npz: ")
    assert "pickle" not in str(info.value)


def test_bundled_digits() -> None:
    x, y = load_images("digits", "digit")
    assert x.shape == (1797, 1, 8, 8)
    assert x.dtype == np.float32
    assert (x.min(), x.max()) == (0.0, 16.0)
    assert y.shape == (1797,)
    assert sorted(np.unique(y).tolist()) == list(range(10))


# --- ingest_images ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_naming_the_count_and_first_index(bad: float) -> None:
    x = _images([0, 1, 0, 1, 0, 1])
    x[2, 0, 1, 2] = bad
    x[4, 0, 0, 2] = bad
    with pytest.raises(PipelineError) as info:
        ingest_images(x, np.array([0, 1, 0, 1, 0, 1]), "y", "inputs/img.npz")
    assert _one_line(info) == (
        "inputs/img.npz: array 'x': expected finite pixel values, got NaN or +/-inf in 2 image(s), first at index 2"
    )


def test_unlabelled_images_are_dropped_with_their_pixels() -> None:
    y = np.array([0.0, np.nan, 1.0, 0.0, np.nan, 1.0])
    x = _images([0, 9, 1, 0, 9, 1])
    table, images, schema, profile = ingest_images(x, y, "y")
    assert _ids(images) == [0, 2, 3, 5]
    assert table["y"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert list(table.index) == [0, 1, 2, 3]
    assert (profile["rows_loaded"], profile["rows_dropped_missing_target"], profile["rows"]) == (6, 2, 4)
    assert schema.task == "classification"


def test_all_unlabelled_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"^src: array 'y': expected some labelled images, got none of 3$"):
        ingest_images(_images([0, 0, 0]), np.full(3, np.nan), "y", "src")


def _with_copies() -> tuple[np.ndarray, np.ndarray]:
    x = _images([0, 1, 0, 1, 0, 1])
    x[3] = x[1]  # same pixels, same label: a copy of image 1
    x[4] = x[0]  # same pixels as image 0 but a different label below: two examples
    x[5] = x[1]  # a second copy of image 1
    return x, np.array([0, 1, 0, 1, 1, 1])


def test_repeated_images_are_kept_and_counted_by_default() -> None:
    x, y = _with_copies()
    table, images, _, profile = ingest_images(x, y, "y")
    np.testing.assert_array_equal(images, x)
    assert table["y"].tolist() == y.tolist()
    assert (profile["rows"], profile["rows_dropped_duplicate"], profile["duplicates"]) == (6, 0, "keep")
    assert (profile["rows_repeated"], profile["repeated_groups"]) == (2, 1)  # images 3 and 5 repeat image 1


def test_exact_duplicates_are_dropped_and_counted_with_drop() -> None:
    x, y = _with_copies()
    table, images, _, profile = ingest_images(x, y, "y", duplicates="drop")
    assert _ids(images) == [0, 1, 2, 0]  # image 4 is a copy of image 0's pixels
    np.testing.assert_array_equal(images, x[[0, 1, 2, 4]])
    assert table["y"].tolist() == [0, 1, 0, 1]
    assert profile["rows_dropped_duplicate"] == 2
    assert (profile["rows"], profile["rows_repeated"]) == (4, 0)


def test_a_duplicate_of_an_unlabelled_image_is_not_counted_twice() -> None:
    x = _images([0, 0, 1, 1])
    x[1] = x[0]
    y = np.array([0.0, np.nan, 1.0, 1.0])
    for duplicates in ("keep", "drop"):
        _, images, _, profile = ingest_images(x, y, "y", duplicates=duplicates)
        assert (profile["rows_dropped_missing_target"], profile["rows_dropped_duplicate"]) == (1, 0)
        assert profile["rows_repeated"] == 0
        assert _ids(images) == [0, 2, 3]


def test_string_labels_are_kept_as_labels() -> None:
    y = np.array(["cat", "dog", "cat", "bird", "dog"])
    table, images, schema, profile = ingest_images(_images([0] * 5), y, "animal")
    assert table["animal"].tolist() == ["cat", "dog", "cat", "bird", "dog"]
    assert schema.task == "classification"
    assert profile["class_counts"] == {"bird": 1, "cat": 2, "dog": 2}
    assert _ids(images) == [0, 1, 2, 3, 4]


def test_a_single_class_is_refused() -> None:
    with pytest.raises(PipelineError) as info:
        ingest_images(_images([3, 3, 3]), np.array([3, 3, 3]), "digit", "inputs/img.npz")
    assert _one_line(info) == "inputs/img.npz: array 'digit': expected at least 2 classes, got [3]"


def test_a_single_class_left_after_dropping_unlabelled_images_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"expected at least 2 classes, got \[1\.0\]"):
        ingest_images(_images([1, 1, 0]), np.array([1.0, 1.0, np.nan]), "digit")


def test_profile_and_schema_describe_the_images() -> None:
    x = _images([2, 0, 2, 1, 2], shape=(3, 4, 5))
    table, images, schema, profile = ingest_images(x, np.array([2, 0, 2, 1, 2]), "digit", "inputs/img.npz")
    assert schema == Schema("digit", (), "classification", "image", image_shape=(3, 4, 5))
    assert profile["modality"] == "image"
    assert profile["image_shape"] == [3, 4, 5]
    assert profile["class_counts"] == {"0": 1, "1": 1, "2": 3}
    assert profile["source"] == "inputs/img.npz"
    assert profile["pixels"]["max"] == pytest.approx(4.0)  # the row number in pixel [0, 0, 0] of image 4
    assert profile["columns"] == {"digit": {"dtype": "int64", "kind": "target", "missing": 0}}
    assert images.shape == (5, 3, 4, 5) and list(table.columns) == ["digit"]


def test_many_distinct_float_labels_are_a_regression() -> None:
    y = np.linspace(0.0, 1.0, 30) + 0.001
    _, _, schema, profile = ingest_images(_images(list(range(30))), y, "size")
    assert schema.task == "regression"
    assert profile["class_counts"] is None
    assert profile["target_summary"]["mean"] == pytest.approx(0.501)


# --- split_any --------------------------------------------------------------------------------------------------


DIGITS = {"source": "digits", "target": "digit"}  # the data section of this file's image params


def test_split_cuts_the_images_with_their_rows(make_params: MakeParams) -> None:
    params = make_params(data=DIGITS)
    labels = np.array([0, 0, 1, 2] * 10)  # 0: 20 images, 1: 10, 2: 10
    x = _images(labels)
    frame = pd.DataFrame({"digit": labels, "row": range(40)})
    schema = Schema("digit", (), "classification", "image", image_shape=SHAPE)
    tables, arrays = split_any(frame, x, schema, params)
    assert arrays is not None and list(arrays) == ["train", "val", "test"]
    for name, table in tables.items():
        part = arrays[name]
        assert part.shape == (len(table), *SHAPE)
        assert _ids(part) == table["row"].tolist()  # each image is its row's image
        assert part[:, 0, 0, 1].astype(int).tolist() == table["digit"].tolist()
        np.testing.assert_array_equal(part, x[table["row"].to_numpy()])
    ids = [i for part in arrays.values() for i in _ids(part)]
    assert sorted(ids) == list(range(40))  # disjoint and complete
    # stratified with val 0.15 and test 0.2: per class round(n * 0.2) to test, round(n * 0.15) to val
    expected = {"train": {0: 13, 1: 6, 2: 6}, "val": {0: 3, 1: 2, 2: 2}, "test": {0: 4, 1: 2, 2: 2}}
    for name, counts in expected.items():
        assert tables[name]["digit"].value_counts().sort_index().to_dict() == counts


def _too_small_split(make_params: MakeParams) -> tuple[pd.DataFrame, np.ndarray, Any]:
    labels = np.array([0] * 10 + [1] * 2)  # class 1: round(0.8) to val, round(0.8) to test, none left for train
    return (pd.DataFrame({"digit": labels}), _images(labels),
            make_params(data=DIGITS, split={"val": 0.4, "test": 0.4}))


def test_split_refuses_a_class_with_no_train_images(make_params: MakeParams) -> None:
    frame, x, params = _too_small_split(make_params)
    schema = Schema("digit", (), "classification", "image", image_shape=SHAPE)
    with pytest.raises(PipelineError) as info:
        split_any(frame, x, schema, params)
    assert re.match(r"split\.val = 0\.4, split\.test = 0\.4: class \S*1\S* has 2 examples, expected at least "
                    r"one left for train$", _one_line(info))


def test_split_refusal_names_the_class_as_the_user_wrote_it(make_params: MakeParams) -> None:
    frame, x, params = _too_small_split(make_params)
    schema = Schema("digit", (), "classification", "image", image_shape=SHAPE)
    with pytest.raises(PipelineError, match=r"class 1 has 2 examples"):
        split_any(frame, x, schema, params)


def test_grouped_split_keeps_the_same_pixels_in_one_part(make_params: MakeParams) -> None:
    params = make_params(data={**DIGITS, "duplicates": "group"})
    labels = np.array([0, 1] * 30)
    x = np.zeros((60, *SHAPE), dtype="float32")
    x[:, 0, 0, 0] = np.arange(60) % 11  # 11 distinct pictures shown 5 or 6 times each, under both labels
    schema = Schema("digit", (), "classification", "image", image_shape=SHAPE)
    for seed in range(5):
        reseeded = parse_params({**params.model_dump(), "seed": seed})
        _, arrays = split_any(pd.DataFrame({"digit": labels}), x, schema, reseeded)
        assert arrays is not None
        where = {i: {name for name, part in arrays.items() if i in _ids(part)} for i in range(11)}
        assert all(len(parts) == 1 for parts in where.values()), where  # each picture in exactly one part
        assert sum(len(part) for part in arrays.values()) == 60


def test_split_of_images_is_seeded(make_params: MakeParams) -> None:
    params = make_params(data=DIGITS)
    labels = np.array([0, 1] * 10)
    schema = Schema("digit", (), "classification", "image", image_shape=SHAPE)
    frame = pd.DataFrame({"digit": labels})
    _, first = split_any(frame, _images(labels), schema, params)
    _, again = split_any(frame, _images(labels), schema, params)
    other = make_params(seed=7, data=DIGITS)
    _, reseeded = split_any(frame, _images(labels), schema, other)
    assert first is not None and again is not None and reseeded is not None
    assert all(_ids(first[name]) == _ids(again[name]) for name in first)
    assert any(_ids(first[name]) != _ids(reseeded[name]) for name in first)


# --- clean_images -----------------------------------------------------------------------------------------------

IMAGE_SCHEMA = Schema("digit", (), "classification", "image", image_shape=SHAPE)


@pytest.fixture
def config(make_clean_config: MakeCleanConfig) -> MakeCleanConfig:
    """``make_clean_config`` with SMOTE from one neighbour unless a test says otherwise (the classes are tiny)."""
    return functools.partial(make_clean_config, smote_neighbors=1)


TRAIN_LABELS = [0, 1, 0, 0, 1, 0]  # 0: 4 images (ids 0 2 3 5), 1: 2 images (ids 1 4)


def _parts() -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    val_labels, test_labels = [1, 1, 1, 0], [0, 1, 1]
    tables = {name: pd.DataFrame({"digit": labels})
              for name, labels in (("train", TRAIN_LABELS), ("val", val_labels), ("test", test_labels))}
    images = {"train": _images(TRAIN_LABELS), "val": _images(val_labels) + 100, "test": _images(test_labels) + 200}
    return tables, images


def _check_val_and_test_untouched(tables: dict[str, pd.DataFrame], images: dict[str, np.ndarray]) -> None:
    original_tables, original_images = _parts()
    for name in ("val", "test"):
        pd.testing.assert_frame_equal(tables[name], original_tables[name])
        np.testing.assert_array_equal(images[name], original_images[name])


def _check_rows_match(table: pd.DataFrame, x: np.ndarray) -> None:
    assert len(table) == len(x)
    assert list(table.index) == list(range(len(table)))
    assert x[:, 0, 0, 1].astype(int).tolist() == table["digit"].tolist()


def test_upsample_equalises_counts_and_copies_whole_images(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    out, arrays, _, report = clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="upsample"), seed=0)
    train, x = out["train"], arrays["train"]
    assert train["digit"].value_counts().sort_index().to_dict() == {0: 4, 1: 4}
    _check_rows_match(train, x)
    np.testing.assert_array_equal(x[:6], images["train"])  # originals first, as they were
    assert train["digit"].tolist()[:6] == TRAIN_LABELS
    assert set(_ids(x[6:])) <= {1, 4}  # the copies are minority images...
    for copy in x[6:]:
        np.testing.assert_array_equal(copy, images["train"][int(copy[0, 0, 0])])  # ...copied whole
    assert report["train_class_counts_before"] == {"0": 4, "1": 2}
    assert report["train_class_counts_after"] == {"0": 4, "1": 4}
    assert (report["imbalance"], report["class_counts_unit"], report["class_weight"]) == ("upsample", "images", None)
    _check_val_and_test_untouched(out, arrays)


def test_downsample_keeps_a_subset_in_order(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    out, arrays, _, report = clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="downsample"), seed=0)
    train, x = out["train"], arrays["train"]
    assert train["digit"].value_counts().sort_index().to_dict() == {0: 2, 1: 2}
    _check_rows_match(train, x)
    ids = _ids(x)
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert {1, 4} <= set(ids)  # the minority class is kept whole
    np.testing.assert_array_equal(x, images["train"][ids])
    assert report["train_class_counts_after"] == {"0": 2, "1": 2}
    _check_val_and_test_untouched(out, arrays)


def test_smote_adds_interpolated_images_after_the_originals(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    out, arrays, _, report = clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="smote"), seed=0)
    train, x = out["train"], arrays["train"]
    assert x.shape == (8, *SHAPE) and x.dtype == np.float32
    assert train["digit"].tolist() == TRAIN_LABELS + [1, 1]
    assert train["digit"].dtype == np.int64
    np.testing.assert_array_equal(x[:6], images["train"])  # originals first, bit for bit
    # with one neighbour and two minority images, each new image lies on the segment between them
    a, b = images["train"][1].astype("float64"), images["train"][4].astype("float64")
    for new in x[6:].astype("float64"):
        t = (new[0, 0, 0] - a[0, 0, 0]) / (b[0, 0, 0] - a[0, 0, 0])
        assert 0.0 <= t <= 1.0
        np.testing.assert_allclose(new, a + t * (b - a), atol=1e-5)
    assert report["train_class_counts_after"] == {"0": 4, "1": 4}
    assert report["imbalance"] == "smote"
    _check_val_and_test_untouched(out, arrays)


def test_smote_with_string_labels_keeps_their_dtype(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    tables = {name: table.assign(digit=table["digit"].map({0: "zero", 1: "one"}).astype("str"))
              for name, table in tables.items()}
    out, arrays, _, _ = clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="smote"), seed=0)
    assert out["train"]["digit"].tolist()[6:] == ["one", "one"]
    assert out["train"]["digit"].dtype == tables["train"]["digit"].dtype
    assert len(arrays["train"]) == 8


def test_smote_with_too_few_minority_images_is_refused(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    with pytest.raises(PipelineError) as info:
        clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="smote", smote_neighbors=2), seed=0)
    assert re.match(r"clean\.smote_neighbors = 2: class \S*1\S* has 2 train images, expected more than 2 "
                    r"\(lower clean\.smote_neighbors or use upsample\)$", _one_line(info))


def test_smote_refusal_names_the_class_as_the_user_wrote_it(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    with pytest.raises(PipelineError, match=r"^clean\.smote_neighbors = 2: class 1 has 2 train images"):
        clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="smote", smote_neighbors=2), seed=0)


def test_class_weight_leaves_the_images_and_returns_weights(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    out, arrays, _, report = clean_images(tables, images, IMAGE_SCHEMA, config(imbalance="class_weight"), seed=0)
    pd.testing.assert_frame_equal(out["train"], tables["train"])
    np.testing.assert_array_equal(arrays["train"], images["train"])
    assert report["class_weight"] == {"0": pytest.approx(6 / (2 * 4)), "1": pytest.approx(6 / (2 * 2))}
    assert report["train_class_counts_after"] == {"0": 4, "1": 2}
    _check_val_and_test_untouched(out, arrays)


def test_regression_images_are_never_resampled(config: MakeCleanConfig) -> None:
    # the stage refuses a class-only strategy for regression (config.require_imbalance); the pure function never
    # resamples a regression target whatever it is given
    tables, images = _parts()
    tables = {name: table.assign(digit=table["digit"] * 1.5 + 0.25) for name, table in tables.items()}
    schema = Schema("digit", (), "regression", "image", image_shape=SHAPE)
    out, arrays, _, report = clean_images(tables, images, schema, config(imbalance="upsample"), seed=0)
    pd.testing.assert_frame_equal(out["train"], tables["train"])
    np.testing.assert_array_equal(arrays["train"], images["train"])
    assert report["imbalance"] == "none" and report["class_prior"] is None and not report["prior_correction"]
    assert report["train_class_counts_before"] is None and report["train_class_counts_after"] is None
    assert report["class_weight"] is None


def test_clean_images_does_not_modify_its_inputs(config: MakeCleanConfig) -> None:
    tables, images = _parts()
    for strategy in ("upsample", "downsample", "smote"):
        clean_images(tables, images, IMAGE_SCHEMA, config(imbalance=strategy), seed=0)
    original_tables, original_images = _parts()
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], original_tables[name])
        np.testing.assert_array_equal(images[name], original_images[name])
