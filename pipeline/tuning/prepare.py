"""Prepared data for a trial: the clean and scale stages' outputs for one data configuration, computed once.

Trials that differ only in model or training keys read the same cleaned and scaled folders. Each configuration
(the keys the clean and scale stages read, and the raw schema and split folder they read) has its own folder
``<cache>/<key>/{clean,scaled}``. It is built in a temporary sibling and renamed into place whole, so processes
that prepare the same key at once never use a half-built folder: the first rename wins and the others discard
their copy and use the winner's.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.io import file_md5
from pipeline.stages.clean import clean_folder
from pipeline.stages.scale import scale_folder

DATA_SECTIONS = ("clean", "scale")  # with ``seed``: every key dvc.yaml lists for the clean and scale stages
DIGEST_CHARS = 16  # 64 bits of a sha256: no two configurations of one study collide in practice
_MD5S: dict[tuple[str, int, int, int], str] = {}  # a file's md5 by (path, size, mtime_ns, inode): read once a process


@dataclass(frozen=True)
class Prepared:
    """The folders one trial reads, as the DVC stages lay them out.

    Attributes:
        raw: Ingest's folder (its ``schema.json``).
        split: The split folder the data were cleaned from.
        clean: The clean stage's output for the trial's data configuration.
        scaled: The scale stage's output: what training reads.
    """

    raw: Path
    split: Path
    clean: Path
    scaled: Path


def data_params(params: Params) -> dict[str, Any]:
    """What the clean and scale stages read from params: ``seed`` and every ``clean.*`` and ``scale.*`` key."""
    keys: dict[str, Any] = {"seed": params.seed}
    for section in DATA_SECTIONS:
        for name, value in getattr(params, section).model_dump(mode="json").items():
            keys[f"{section}.{name}"] = value
    return keys


def data_key(params: Params) -> str:
    """A short hex digest of :func:`data_params`: trials that differ only in model or training keys share it."""
    text = json.dumps(data_params(params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _md5(path: Path) -> str:
    # memoised by the file's stat: a trial's process prepares many times from one split, read once; an atomic
    # rewrite is a new inode, so a rewritten file is never taken for the old one
    info = path.stat()
    stamp = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
    if stamp not in _MD5S:
        _MD5S[stamp] = file_md5(path)
    return _MD5S[stamp]


def inputs_digest(*paths: Path) -> str:
    """A short hex digest of the names and contents of files, and of every file under folders.

    By content (md5, as DVC hashes), not by names, sizes and times: a split that DVC checks out again, or a
    cross-validation fold rewritten with the same rows, has new times but the same data, and keeps its prepared
    folder; a changed split never reuses stale data whatever its times. Hidden names (an atomic writer's
    temporaries) are left out. Where the folders lie does not matter, only what they hold.
    """
    digest = hashlib.sha256()
    for position, top in enumerate(map(Path, paths)):
        if not top.exists():
            raise PipelineError(f"{top}: not found (run the stage that writes it first)")
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for file in files:
            name = file.relative_to(top) if top.is_dir() else Path(file.name)
            if any(part.startswith(".") for part in name.parts):
                continue
            digest.update(f"{position}/{name.as_posix()}\0{_md5(file)}\0".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _sweep_dead(final: Path) -> None:
    """Remove the temporary siblings of ``final`` whose builder process is gone (killed before it could)."""
    for stale in final.parent.glob(f".{glob.escape(final.name)}.building-*"):
        pid = stale.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _publish(tmp: Path, final: Path, ready: Callable[[Path], bool]) -> None:
    """Rename ``tmp`` to ``final``; when ``final`` is there first, keep it if ``ready``, else replace it."""
    for _ in range(8):  # only a stream of writers replacing one another could use them up
        try:
            os.rename(tmp, final)  # atomic; refuses a non-empty folder already there
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise PipelineError(f"{final}: could not write it ({os.strerror(exc.errno or 0)})") from None
        if ready(final):  # another process built the same thing first: use its copy
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-{os.getpid()}-stale-", dir=final.parent))
        try:  # an outdated folder (other inputs): moved aside in one step, so no reader sees it half removed
            os.rename(final, aside / final.name)
        except FileNotFoundError:
            pass
        shutil.rmtree(aside, ignore_errors=True)
    raise PipelineError(f"{final}: could not put it in place: other processes kept replacing it")


def build_once(final: Path, build: Callable[[Path], None], ready: Callable[[Path], bool]) -> Path:
    """``final`` as ``build`` makes it, unless it is already there and ``ready``; safe for concurrent builders.

    ``build`` fills an empty temporary sibling folder, which is renamed to ``final`` whole. When several
    processes build ``final`` at once, the first rename wins; the others discard their copy and use it.

    Args:
        final: The folder to produce.
        build: Writes the folder's content into the folder it is given.
        ready: Whether a folder already at ``final`` holds what ``build`` would write (so it is used as it is).

    Returns:
        ``final``.
    """
    final = Path(final)
    if ready(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-{os.getpid()}-", dir=final.parent))
    try:
        build(tmp)
        _publish(tmp, final, ready)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when it was renamed; a loser's copy otherwise
    return final


def _complete(folder: Path) -> bool:
    return (folder / "clean").is_dir() and (folder / "scaled").is_dir()


def prepare(params: Params, raw: Path, split: Path, cache: Path) -> Prepared:
    """The cleaned and scaled data of ``split`` for ``params``' data configuration, computed once per cache.

    Args:
        params: The trial's params; only :func:`data_params` matter here.
        raw: Ingest's folder (the clean and scale stages read its ``schema.json``).
        split: A split folder as the split stage writes it (``data/split``, or a cross-validation fold).
        cache: Where prepared folders are kept: ``<cache>/<data key>-<digest of the schema and split>/``.

    Returns:
        The folders, built with :func:`clean_folder` then :func:`scale_folder` or reused as they were.
    """
    raw, split = Path(raw), Path(split)
    final = Path(cache) / f"{data_key(params)}-{inputs_digest(raw / 'schema.json', split)}"

    def build(tmp: Path) -> None:
        clean_folder(params, raw, split, tmp / "clean")
        scale_folder(params, raw, tmp / "clean", tmp / "scaled")

    build_once(final, build, _complete)
    return Prepared(raw, split, final / "clean", final / "scaled")


def workspace_prepared(root: Path) -> Prepared:
    """The DVC workspace's own folders under ``root``: what a trial whose data configuration equals
    params.yaml's reads once ``dvc repro scale`` has run."""
    data = Path(root) / "data"
    return Prepared(data / "raw", data / "split", data / "clean", data / "scaled")
