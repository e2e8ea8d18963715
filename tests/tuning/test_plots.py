"""The search's plots: real PNGs, for any number of finished trials."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.tuning.plots import history_png, importances_png, slices_png

PNG = b"\x89PNG\r\n\x1a\n"


def _size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        image.verify()
        return image.size


def test_history_with_pruned_trials(tmp_path: Path) -> None:
    path = tmp_path / "history.png"
    history_png(path, [0, 1, 2, 3], [0.9, None, 0.95, 0.8], "maximize", "val/accuracy", "penguins")
    assert _size(path) == (960, 540)  # 8 x 4.5 inches at 120 dpi
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_history_of_one_trial_and_of_none_finished(tmp_path: Path) -> None:
    history_png(tmp_path / "one.png", [0], [0.5], "minimize", "val/mae", "one")
    history_png(tmp_path / "none.png", [0, 1], [None, None], "minimize", "val/mae", "none")
    assert _size(tmp_path / "one.png") == (960, 540)
    assert _size(tmp_path / "none.png") == (720, 360)  # the "no finished trial" figure


def test_importances_bars_and_none(tmp_path: Path) -> None:
    importances_png(tmp_path / "imp.png", {"train.lr": 0.7, "model.dropout": 0.2, "model.hidden": 0.1}, "t")
    assert _size(tmp_path / "imp.png")[1] == int((1.2 + 0.45 * 3) * 120)  # one row per key
    importances_png(tmp_path / "empty.png", {}, "t")
    assert _size(tmp_path / "empty.png") == (720, 360)


def test_slices_one_panel_per_key_with_log_and_categorical_axes(tmp_path: Path) -> None:
    rows = [{"train.lr": 1e-3, "model.hidden": [64, 32], "clean.imbalance": "none"},
            {"train.lr": 3e-2, "model.hidden": [128, 64], "clean.imbalance": "upsample"},
            {"train.lr": 1e-4, "model.hidden": [64, 32]}]  # a key the trial left unread is missing
    keys = ["train.lr", "model.hidden", "clean.imbalance"]
    slices_png(tmp_path / "s.png", rows, [0.9, 0.8, None], keys, "val/accuracy", "t", log_keys={"train.lr"})
    assert _size(tmp_path / "s.png")[0] == int(3.6 * 3 * 120)
    slices_png(tmp_path / "one.png", rows[:1], [0.9], keys, "val/accuracy", "t")
    assert _size(tmp_path / "one.png")[0] == int(3.6 * 3 * 120)
    slices_png(tmp_path / "none.png", rows[:1], [None], keys, "val/accuracy", "t")
    assert _size(tmp_path / "none.png") == (720, 360)
