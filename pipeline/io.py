"""Reading, writing and hashing stage files: atomic writes, reads that name the file when it is missing or corrupt,
and the md5 DVC records for each.

Every output goes to a temporary name beside its final place and is renamed into place only once complete,
so a failed stage never leaves a complete-looking file behind (DESIGN rule 2).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.errors import PipelineError

if TYPE_CHECKING:  # numpy and pandas only where used: `pipeline summary` and --help read JSON, not tables
    import numpy as np
    import pandas as pd


def _sweep(final: Path) -> None:
    """Remove what an earlier writer of ``final`` left under a temporary name when it was killed (SIGKILL, a power
    cut: no chance to clean up), so partial copies of an output do not pile up beside it."""
    _remove(final.parent.glob(f".{glob.escape(final.name)}.tmp-*"))


def sweep_temporaries(folder: Path) -> None:
    """Remove every temporary name the atomic writers left in ``folder`` when they were killed: for a folder
    whose files are rewritten under varying names over a long process (training checkpoints)."""
    _remove(Path(folder).glob(".*.tmp-*"))


def _remove(paths: Iterable[Path]) -> None:
    for stale in paths:
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _shown(path: Path) -> Path:
    """``path`` as the user knows it: a file inside an :func:`atomic_dir`'s temporary folder by its final name."""
    match = re.fullmatch(r"\.(.+)\.tmp-\w+", path.parent.name)
    return path.parent.parent / match.group(1) / path.name if match else path


def _reason(exc: OSError) -> str:
    """The system's words for an OS error (``No space left on device``), without the paths it repeats."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` only if the block succeeds.

    Args:
        final: The directory to produce.

    Yields:
        The temporary directory to write into.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep(final)
    # one try from creating the temporary name to the rename: a SIGTERM (Terminated) landing anywhere in between,
    # even before mkdtemp has returned the name, still removes it
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        yield tmp
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    except OSError as exc:  # a full disk while copying into the folder: as in atomic_file, one line naming it
        _sweep(final)
        raise PipelineError(f"{_shown(final)}: could not write it ({_reason(exc)})") from None
    except BaseException:
        _sweep(final)
        raise


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path that is renamed to ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep(final)
    try:  # as in atomic_dir: the temporary name is removed whenever it is interrupted
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
        os.close(fd)
        yield Path(name)
        os.replace(name, final)
    except OSError as exc:  # a full disk or quota: one line naming the file, not a traceback
        _sweep(final)
        raise PipelineError(f"{_shown(final)}: could not write it ({_reason(exc)})") from None
    except BaseException:
        _sweep(final)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically; NaN and infinity are refused (JSON has neither)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as a safetensors file, atomically; a full disk is one line naming the file.

    safetensors reports an OS error as its own exception type with the errno in the text: it is turned back
    into the ``OSError`` it was, which :func:`atomic_file` words.
    """
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except Exception as exc:
            code = re.search(r"\(os error (\d+)\)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from None


def read_json(path: Path) -> Any:
    """Read a JSON file, naming the file on any failure."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found (run the stage that writes it first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: expected valid JSON, got a corrupt file ({exc})") from None


T = TypeVar("T")
# what a loader raises on valid JSON of the wrong shape: a missing key, a list where an object belongs, a string
# where a number belongs
_CONTENT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def read_state(path: Path, load: Callable[[Any], T]) -> T:
    """Read a JSON file a stage wrote and build from it with ``load``, naming the file when its content is valid
    JSON but not what the pipeline writes there (a hand-edited or foreign file), rather than a ``KeyError``
    traceback later.

    Args:
        path: The JSON file.
        load: Builds the object from the parsed JSON; it raises a ``KeyError``, ``TypeError`` and the like on
            content of the wrong shape.

    Returns:
        What ``load`` returns.
    """
    state = read_json(path)
    try:
        return load(state)
    except PipelineError as exc:  # the loader's own check (build_net's unknown kind): say which file held it
        raise PipelineError(f"{path}: {exc}") from None
    except _CONTENT_ERRORS as exc:
        text = str(exc).splitlines() or ["?"]
        why = f"no key {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else text[0]
        raise PipelineError(f"{path}: expected the content the pipeline writes there, got content it cannot use "
                            f"({type(exc).__name__}: {why})") from None


CHUNK_ROWS = 2**20  # rows converted to Arrow and written at a time (a Parquet row group each, as pyarrow's default)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame as Parquet without its index, a row group at a time.

    Converting a whole frame to Arrow at once holds a second copy of it; slices keep that copy small. The
    schema comes from the whole frame, so a slice whose text column happens to be all empty keeps its type.
    """
    import pyarrow as pa

    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    write_parquet_chunks(
        path, (frame.iloc[start : start + CHUNK_ROWS] for start in range(0, max(len(frame), 1), CHUNK_ROWS)), schema
    )


def write_parquet_chunks(path: Path, chunks: Iterable[pd.DataFrame], schema: Any = None) -> None:
    """Write frames with the same columns as one Parquet file, a row group each, holding one chunk at a time.

    For outputs much larger than their input (one-hot encoding, upsampling), so the whole output never has to
    sit in memory next to its Arrow copy.

    Args:
        path: The file to write (atomically).
        chunks: Frames with the same columns and dtypes.
        schema: The Arrow schema; by default the first chunk's.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_file(path) as tmp:
        writer = None
        try:
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise PipelineError(f"{path}: expected at least one chunk of rows to write, got none")


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file, naming the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (run the stage that writes it first)")
    try:
        import pyarrow.parquet as pq

        # split_blocks + self_destruct free each Arrow column as it is converted, so reading a table never holds
        # it twice (once as Arrow, once as pandas); the result equals pd.read_parquet's
        return pq.read_table(path).to_pandas(split_blocks=True, self_destruct=True)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise PipelineError(f"{path}: expected a Parquet file, got an unreadable one ({exc})") from None


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write an array as ``.npy`` (never pickled: object arrays are refused)."""
    import numpy as np

    with atomic_file(path) as tmp:
        with open(tmp, "wb") as stream:
            np.save(stream, np.ascontiguousarray(array), allow_pickle=False)


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Read an ``.npy`` array without pickle, naming the file on any failure.

    Args:
        path: The file.
        mmap: Map the file instead of reading it (read-only), for arrays larger than wanted in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (run the stage that writes it first)")
    import numpy as np

    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise PipelineError(f"{path}: expected a .npy array, got an unreadable file ({exc})") from None


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes, the hash DVC itself uses."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
