"""folds: k-fold splits of train+val in the split stage's format; test copied byte for byte, never drawn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.stages.clean import clean_folder
from pipeline.tuning.folds import FOLD_PARAMS, fold_positions, time_positions, write_folds
from tests.tuning.inputs import ROOT, images, params_of, project, run_stage, sequences, table, write_params

SPLIT_FILES = ["summary.json", "test.parquet", "train.parquet", "val.parquet"]


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project of :func:`table`'s 60 rows after ingest and split: 48 train+val rows, Chinstrap (the smallest
    class) 8 of them."""
    root = tmp_path_factory.mktemp("tabular")
    project(root, table(), "species")
    return root


def _pool(split: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(split / f"{name}.parquet") for name in ("train", "val")], ignore_index=True)


def _parts(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("train", "val", "test")}


def test_folds_partition_train_and_val_once_each_and_copy_test_byte_for_byte(tabular: Path, tmp_path: Path) -> None:
    split = tabular / "data" / "split"
    folders = write_folds(params_of(tabular), tabular / "data" / "raw", split, 4, tmp_path / "folds")
    assert folders == [tmp_path / "folds" / f"fold-{i}" for i in range(4)]
    pool = set(_pool(split)["id"])
    seen: list[int] = []
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == SPLIT_FILES
        parts = _parts(folder)
        train, val = set(parts["train"]["id"]), set(parts["val"]["id"])
        assert train | val == pool and not train & val  # train: the rest of train+val
        seen += parts["val"]["id"].tolist()
        assert (folder / "test.parquet").read_bytes() == (split / "test.parquet").read_bytes()
        assert list(parts["train"].columns) == list(pd.read_parquet(split / "train.parquet").columns)
        order = _pool(split)["id"].tolist()  # rows keep their order: train's, then val's
        for name in ("train", "val"):
            assert parts[name]["id"].tolist() == [i for i in order if i in set(parts[name]["id"])]
        summary = read_json(folder / "summary.json")
        assert {name: s["rows"] for name, s in summary.items()} == {name: len(p) for name, p in parts.items()}
    assert sorted(seen) == sorted(pool)  # every train+val row validated exactly once


def test_folds_are_stratified_by_class(tabular: Path, tmp_path: Path) -> None:
    split = tabular / "data" / "split"
    k = 4
    whole = _pool(split)["species"].value_counts()
    for folder in write_folds(params_of(tabular), tabular / "data" / "raw", split, k, tmp_path / "folds"):
        val = pd.read_parquet(folder / "val.parquet")["species"].value_counts()
        for cls, n in whole.items():  # each class's rows dealt out evenly: within one row of its share
            assert abs(val.get(cls, 0) - n / k) < 1, (folder.name, cls, val.to_dict())


def test_folds_are_seeded(tabular: Path, tmp_path: Path) -> None:
    raw, split = tabular / "data" / "raw", tabular / "data" / "split"
    params = params_of(tabular)

    def vals(out: Path, seed: int) -> list[list[int]]:
        folders = write_folds(params.model_copy(update={"seed": seed}), raw, split, 3, out)
        return [pd.read_parquet(f / "val.parquet")["id"].tolist() for f in folders]

    assert vals(tmp_path / "a", params.seed) == vals(tmp_path / "b", params.seed)
    assert vals(tmp_path / "a", params.seed) != vals(tmp_path / "c", params.seed + 1)


def test_too_many_folds_name_the_key_and_the_smallest_class(tabular: Path, tmp_path: Path) -> None:
    args = (params_of(tabular), tabular / "data" / "raw", tabular / "data" / "split")
    with pytest.raises(PipelineError) as caught:
        write_folds(*args, 12, tmp_path / "folds")
    assert str(caught.value) == ("tune.folds = 12: expected at most 8 (the smallest class, 'Chinstrap', has 8 "
                                 "train+val rows)")
    with pytest.raises(PipelineError, match=r"^cv\.folds = 1: expected at least 2 folds$"):
        write_folds(*args, 1, tmp_path / "folds", key="cv.folds")
    assert not (tmp_path / "folds").exists() and not list(tmp_path.iterdir())  # nothing half-written left
    assert len(write_folds(*args, 8, tmp_path / "folds")) == 8  # as many as the smallest class allows


def test_folds_are_reused_while_their_inputs_are_unchanged(tabular: Path, tmp_path: Path) -> None:
    raw, split = tabular / "data" / "raw", tabular / "data" / "split"
    params = params_of(tabular)
    folders = write_folds(params, raw, split, 3, tmp_path / "folds")
    stamp = (tmp_path / "folds" / "folds.json").stat().st_mtime_ns
    assert write_folds(params, raw, split, 3, tmp_path / "folds") == folders
    assert (tmp_path / "folds" / "folds.json").stat().st_mtime_ns == stamp  # not drawn again
    moved = params.model_copy(update={"seed": params.seed + 1})
    assert len(write_folds(moved, raw, split, 2, tmp_path / "folds")) == 2  # other seed, other k: drawn again
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["fold-0", "fold-1", "folds.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folds"]  # no temporaries left beside it


def test_a_changed_split_is_drawn_again(tmp_path: Path) -> None:
    project(tmp_path, table(), "species")
    raw, split = tmp_path / "data" / "raw", tmp_path / "data" / "split"
    first = [pd.read_parquet(f / "val.parquet")["id"].tolist()
             for f in write_folds(params_of(tmp_path), raw, split, 3, tmp_path / "folds")]
    write_params(tmp_path, data={"source": "inputs/data.csv", "target": "species"}, split={"val": 0.3})
    run_stage(tmp_path, "split")  # a new split, same params for the folds
    again = [pd.read_parquet(f / "val.parquet")["id"].tolist()
             for f in write_folds(params_of(tmp_path), raw, split, 3, tmp_path / "folds")]
    assert sorted(sum(again, [])) == sorted(_pool(split)["id"]) and again != first


def test_grouped_duplicates_share_a_fold(tmp_path: Path) -> None:
    frame = table(60).drop(columns=["id", "day"])
    frame = pd.concat([frame, frame.iloc[:20]], ignore_index=True)  # 20 rows repeated (labels alike)
    params = project(tmp_path, frame, "species", data={"duplicates": "group"})
    split = tmp_path / "data" / "split"

    def key(part: pd.DataFrame) -> list[tuple[float, str]]:
        return list(zip(part["bill"].fillna(-1.0), part["island"]))

    home: dict[str, int] = {}
    folders = write_folds(params, tmp_path / "data" / "raw", split, 3, tmp_path / "folds")
    for i, folder in enumerate(folders):
        for row in key(pd.read_parquet(folder / "val.parquet")):
            assert home.setdefault(row, i) == i, row  # same inputs: one fold's val
        train, val = (set(key(pd.read_parquet(folder / f"{name}.parquet"))) for name in ("train", "val"))
        assert not train & val
    assert sum(len(pd.read_parquet(f / "val.parquet")) for f in folders) == len(_pool(split))


def test_sequences_keep_each_series_whole_and_are_stratified_by_series(tmp_path: Path) -> None:
    params = project(tmp_path, sequences(30), "y", data={"sequence": {"id": "series", "time": "step"}})
    split = tmp_path / "data" / "split"
    pool = _pool(split)
    labels = pool.groupby("series")["y"].first()
    k = 3
    seen: list[str] = []
    for folder in write_folds(params, tmp_path / "data" / "raw", split, k, tmp_path / "folds"):
        parts = _parts(folder)
        train, val = set(parts["train"]["series"]), set(parts["val"]["series"])
        assert not train & val and train | val == set(labels.index)
        for part in (parts["train"], parts["val"]):  # every series with all its steps, in order
            pd.testing.assert_frame_equal(part, pool[pool["series"].isin(part["series"])].reset_index(drop=True))
        counts = labels[sorted(val)].value_counts()
        for cls, n in labels.value_counts().items():
            assert abs(counts.get(cls, 0) - n / k) < 1
        seen += sorted(val)
    assert sorted(seen) == sorted(labels.index)
    with pytest.raises(PipelineError, match=r"has \d+ train\+val series\)$"):
        write_folds(params, tmp_path / "data" / "raw", split, 20, tmp_path / "more")


def test_images_keep_their_pixels_with_their_rows(tmp_path: Path) -> None:
    params = project(tmp_path, images(40), "y")
    split = tmp_path / "data" / "split"
    number = {"train": np.load(split / "train.npy")[:, 0, 0, 0], "val": np.load(split / "val.npy")[:, 0, 0, 0]}
    seen: list[float] = []
    for folder in write_folds(params, tmp_path / "data" / "raw", split, 3, tmp_path / "folds"):
        assert sorted(p.name for p in folder.iterdir()) == sorted(SPLIT_FILES + ["test.npy", "train.npy", "val.npy"])
        assert (folder / "test.npy").read_bytes() == (split / "test.npy").read_bytes()
        for name in ("train", "val"):
            x, table_rows = np.load(folder / f"{name}.npy"), pd.read_parquet(folder / f"{name}.parquet")
            assert len(x) == len(table_rows)
            np.testing.assert_array_equal(x[:, 0, 0, 0] % 2, table_rows["y"])  # label = image number % 2
        seen += np.load(folder / "val.npy")[:, 0, 0, 0].tolist()
    assert sorted(seen) == sorted(np.concatenate(list(number.values())).tolist())


def test_time_folds_validate_only_after_their_train_rows(tmp_path: Path) -> None:
    params = project(tmp_path, table(), "species", split={"method": "time", "time_column": "day"})
    split = tmp_path / "data" / "split"
    pool = _pool(split)
    k = 3
    blocks = np.array_split(np.sort(pool["day"].to_numpy()), k + 1)
    for i, folder in enumerate(write_folds(params, tmp_path / "data" / "raw", split, k, tmp_path / "folds")):
        parts = _parts(folder)
        assert parts["train"]["day"].max() < parts["val"]["day"].min()  # validation comes after training
        assert sorted(parts["train"]["day"]) == sorted(np.concatenate(blocks[: i + 1]).tolist())
        assert sorted(parts["val"]["day"]) == blocks[i + 1].tolist()
    with pytest.raises(PipelineError, match=r"^tune\.folds = 48: expected at most 47 with split\.method: time"):
        write_folds(params, tmp_path / "data" / "raw", split, 48, tmp_path / "more")


def test_time_folds_of_sequences_order_series_by_their_first_step(tmp_path: Path) -> None:
    params = project(tmp_path, sequences(30), "y", data={"sequence": {"id": "series", "time": "step"}},
                     split={"method": "time"})
    split = tmp_path / "data" / "split"
    for folder in write_folds(params, tmp_path / "data" / "raw", split, 2, tmp_path / "folds"):
        parts = _parts(folder)
        starts = {name: part.groupby("series")["step"].min() for name, part in parts.items() if name != "test"}
        assert starts["train"].max() < starts["val"].min()


def test_a_time_fold_whose_train_lacks_a_class_is_refused(tmp_path: Path) -> None:
    frame = table()
    chinstrap = frame["species"].eq("Chinstrap").to_numpy()
    # in time order: 14 other rows, the 10 Chinstrap rows, 36 other rows; the split's train (the first 39) has
    # Chinstrap, but fold 0 of 3 trains on the first 12 of train+val's 48 rows alone (of 2: the first 16)
    others = np.flatnonzero(~chinstrap)
    order = np.concatenate([others[:14], np.flatnonzero(chinstrap), others[14:]])
    frame.loc[order, "day"] = np.arange(60)
    params = project(tmp_path, frame, "species", split={"method": "time", "time_column": "day"})
    with pytest.raises(PipelineError) as caught:
        write_folds(params, tmp_path / "data" / "raw", tmp_path / "data" / "split", 3, tmp_path / "folds")
    assert str(caught.value) == ("tune.folds = 3: fold 0 trains on no rows of class(es) ['Chinstrap']; expected "
                                 "every class in each fold's train (fewer folds: with split.method: time the first "
                                 "folds train on the earliest examples alone)")
    assert len(write_folds(params, tmp_path / "data" / "raw", tmp_path / "data" / "split", 2, tmp_path / "folds")) == 2


def test_regression_folds_are_plain_shuffled_folds(tmp_path: Path) -> None:
    frame = table().drop(columns=["species"]).assign(mass=np.arange(60) * 10.0)
    params = project(tmp_path, frame, "mass")
    split = tmp_path / "data" / "split"
    folders = write_folds(params, tmp_path / "data" / "raw", split, 5, tmp_path / "folds")
    vals = [pd.read_parquet(f / "val.parquet")["id"].tolist() for f in folders]
    assert sorted(sum(vals, [])) == sorted(_pool(split)["id"]) and {len(v) for v in vals} <= {9, 10}
    with pytest.raises(PipelineError, match=r"^tune\.folds = 49: expected at most 48 \(train\+val has 48 rows\)$"):
        write_folds(params, tmp_path / "data" / "raw", split, 49, tmp_path / "more")


def test_a_fold_is_a_split_folder_the_clean_stage_reads(tabular: Path, tmp_path: Path) -> None:
    params = params_of(tabular)
    (fold, _) = write_folds(params, tabular / "data" / "raw", tabular / "data" / "split", 2, tmp_path / "folds")
    report = clean_folder(params, tabular / "data" / "raw", fold, tmp_path / "clean")
    assert sum(report["train_class_counts_before"].values()) == len(pd.read_parquet(fold / "train.parquet"))


def test_positions_refuse_groups_fewer_than_folds() -> None:
    with pytest.raises(PipelineError, match=r"^k = 3: expected at most 2 \(train\+val has 2 groups of rows with "
                                            r"the same inputs\)$"):
        fold_positions(6, None, 3, 0, np.array([0, 0, 0, 1, 1, 1]), key="k")
    folds = fold_positions(6, None, 2, 0, np.array([0, 0, 0, 1, 1, 1]))
    assert sorted(map(list, (val for _, val in folds))) == [[0, 1, 2], [3, 4, 5]]
    chained = time_positions(pd.Series([5, 1, 4, 2, 3, 0]), 2)
    assert [(list(t), list(v)) for t, v in chained] == [([1, 5], [3, 4]), ([1, 3, 4, 5], [0, 2])]


def test_the_folds_key_reads_split_stage_params_only() -> None:
    split_params = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["split"]["params"])
    assert set(FOLD_PARAMS) <= split_params  # the rest of the split's params reach the folds through its files
