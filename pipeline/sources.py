"""Loading a dataset: the bundled ones (read offline from installed packages or this package) or the user's
CSV / Parquet table or ``.npz`` image file.

Tables (tabular rows, or long-format sequences) load as a DataFrame; images load as an array ``x`` of shape
(N, C, H, W) and a label array. Every failure names the file and says what was expected.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.config.data import BUNDLED, BUNDLED_IMAGES, INPUTS
from pipeline.errors import PipelineError

DATASETS = Path(__file__).with_name("datasets")


def _penguins() -> pd.DataFrame:
    """The Palmer penguins (344 birds, 3 species), from the CSV the palmerpenguins package ships."""
    from palmerpenguins import load_penguins

    return load_penguins()


def _sklearn_data() -> Path:
    """scikit-learn's bundled data folder, found without importing scikit-learn (over a second)."""
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("expected scikit-learn to be installed (it ships the bundled diabetes and digits data)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def _gunpoint() -> pd.DataFrame:
    """UCR GunPoint in long format: 200 series of 150 steps (``series``, ``step``, ``x``, ``label``).

    Vendored under ``pipeline/datasets`` (see its README for the source and citation). The archive's own
    train/test assignment is left out: the split stage draws its own seeded, grouped split.
    """
    frame = pd.read_csv(DATASETS / "gunpoint.csv.gz")
    return frame.drop(columns=["ucr_split"])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: 1797 grey 8x8 images (values 0-16) as (N, 1, 8, 8), labels 0-9."""
    values = np.loadtxt(_sklearn_data() / "digits.csv.gz", delimiter=",", dtype="float32")
    return values[:, :-1].reshape(-1, 1, 8, 8), values[:, -1].astype("int64")


def _diabetes() -> pd.DataFrame:
    """scikit-learn's diabetes data in its original units (442 patients; target: progression after a year).

    Read straight from the files scikit-learn ships, without importing scikit-learn (over a second).
    """
    folder = _sklearn_data()
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    frame = pd.read_csv(folder / "diabetes_data_raw.csv.gz", sep=" ", header=None, names=names)
    frame["progression"] = pd.read_csv(folder / "diabetes_target.csv.gz", header=None)[0].to_numpy()
    return frame


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {"penguins": _penguins, "diabetes": _diabetes, "gunpoint": _gunpoint}
IMAGE_LOADERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {"digits": _digits}
assert set(LOADERS) | set(IMAGE_LOADERS) == set(BUNDLED) and set(IMAGE_LOADERS) == set(BUNDLED_IMAGES)


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        header = next(csv.reader(stream), None)
    if not header:
        raise PipelineError(f"{path}: expected a header row and data rows, got an empty file")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would silently rename them 'x.1'
        raise PipelineError(f"{path}: duplicate column name(s) {repeated}; expected each column once")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path}: expected a readable CSV file ({' '.join(str(exc).split())})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise PipelineError(f"{path}: expected a Parquet file, got an unreadable one ({exc})") from None
    repeated = sorted({name for name in table.column_names if table.column_names.count(name) > 1})
    if repeated:
        raise PipelineError(f"{path}: duplicate column name(s) {repeated}; expected each column once")
    return table.to_pandas(split_blocks=True, self_destruct=True)  # frees each Arrow column once converted


def _project_file(source: str, root: Path) -> Path:
    """``root / source``, refusing a path that would leave ``root``: absolute, or climbing out with ``..``.

    params.yaml is checked the same way when it is read (:class:`pipeline.config.DataConfig`); this holds for any
    other caller too.
    """
    relative = PurePosixPath(source)
    if relative.is_absolute() or ".." in relative.parts:
        raise PipelineError(f"data.source = {source!r}: expected a path inside the project, under {INPUTS}/ "
                            "(no '..', not absolute)")
    return Path(root) / source


def load(source: str, root: Path = Path(".")) -> pd.DataFrame:
    """Load a bundled dataset by name, or a ``.csv`` / ``.parquet`` file by its path under ``root``.

    Raises:
        PipelineError: If the file is missing, empty, holds no data rows, cannot be parsed, or repeats a
            column name.
    """
    if source in LOADERS:
        return LOADERS[source]()
    path = _project_file(source, root)
    if not path.is_file():
        raise PipelineError(f"data.source = {source!r}: file not found at {path}")
    if path.stat().st_size == 0:
        raise PipelineError(f"{source}: expected a header row and data rows, got an empty file")
    frame = _read_csv(path) if path.suffix == ".csv" else _read_parquet(path)
    if frame.empty:
        raise PipelineError(f"{source}: expected at least one data row, got only the header")
    return frame


def _check_file(source: str, root: Path) -> Path:
    path = Path(root) / source
    if not path.is_file():
        raise PipelineError(f"data.source = {source!r}: file not found at {path}")
    if path.stat().st_size == 0:
        raise PipelineError(f"{source}: expected data, got an empty file")
    return path


def _npz_arrays(path: Path, source: str, keys: tuple[str, ...], what: str) -> list[np.ndarray]:
    """The named arrays of an ``.npz``, read without pickle (an object array is refused, never executed)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{source}: expected an .npz archive of arrays, got an unreadable file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise PipelineError(f"{source}: expected an .npz archive with {what}, got a single array")
    with archive:
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise PipelineError(f"{source}: missing array(s) {missing}; expected {what}, got {archive.files}")
        arrays = []
        for key in keys:
            try:
                array = archive[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc):  # object arrays need pickle, which is never allowed
                    raise PipelineError(
                        f"{source}: array {key!r}: expected a numeric array, got one that needs pickle to load "
                        "(images of different shapes saved together?)"
                    ) from None
                raise PipelineError(f"{source}: array {key!r}: expected a readable .npy member ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:  # a truncated or damaged member
                raise PipelineError(f"{source}: expected a readable .npz archive ({exc})") from None
            if not isinstance(array, np.ndarray):  # numpy hands back raw bytes for a member that is no .npy
                raise PipelineError(f"{source}: array {key!r}: expected an .npy array, got a member of another format")
            arrays.append(array)
        return arrays


def _checked_images(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise PipelineError(f"{source}: array 'x': expected N x H x W or N x C x H x W images, got shape {x.shape}")
    if x.dtype.kind not in "uif":
        raise PipelineError(f"{source}: array 'x': expected numbers, got dtype {x.dtype}")
    if len(x) == 0:
        raise PipelineError(f"{source}: expected at least one image, got none")
    return x.astype("float32", copy=False)


def load_images(source: str, target: str, root: Path = Path(".")) -> tuple[np.ndarray, np.ndarray]:
    """Load bundled images by name, or an ``.npz`` file holding ``x`` and the label array named ``target``.

    ``x`` may be (N, H, W) (one channel is added) or (N, C, H, W). Arrays are read without pickle, so an
    object array (images of different shapes saved together) is refused rather than executed.

    Returns:
        ``x`` as float32 (N, C, H, W) and the labels (N,).

    Raises:
        PipelineError: If the file is missing, empty, not an npz, lacks a key, or its arrays disagree in shape.
    """
    if source in IMAGE_LOADERS:
        return IMAGE_LOADERS[source]()
    _project_file(source, root)
    path = _check_file(source, root)
    x, y = _npz_arrays(path, source, ("x", target), f"'x' (the images) and {target!r} (data.target)")
    x = _checked_images(x, source)
    if y.ndim != 1 or len(y) != len(x):
        raise PipelineError(
            f"{source}: array {target!r}: expected one label per image, shape ({len(x)},), got shape {y.shape}"
        )
    return x, y


def read_images(path: Path) -> np.ndarray:
    """Images to predict: the array ``x`` of an ``.npz`` (labels, if present, are ignored), as float32 N x C x H x W."""
    path = _check_file(str(path), Path("."))
    (x,) = _npz_arrays(path, str(path), ("x",), "'x' (the images)")
    return _checked_images(x, str(path))
