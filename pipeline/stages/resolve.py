"""Stage resolve: pin the registered version ``train.init_from`` names, so that DVC sees an alias move.

``dvc.yaml`` marks this stage ``always_changed``: every ``dvc repro`` runs it. It asks the registry, once, which
version ``train.init_from`` names now and writes that version (its name, number and the run that trained it) to
``--out``. train depends on that file rather than on the registry, so DVC's own hashing decides: when an alias has
moved, the file changes and train reruns; when nothing moved, the file is byte-identical and nothing downstream
reruns. train then loads exactly the version written here, even if the alias moves again in between.

With ``train.init_from: null`` (the default) it writes ``{"init_from": null}`` without importing MLflow or
opening a store, and without validating the rest of ``params.yaml`` (ingest does that, naming itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import load_params, read_raw_params
from pipeline.errors import PipelineError, run_main
from pipeline.io import read_json, write_json
from pipeline.stages.common import stage_args

NONE = {"init_from": None}  # what the file holds for a training from random weights
KEYS = ("init_from", "uri", "name", "version", "run_id")  # what it holds for a registered version


def requested(raw: dict[str, Any]) -> Any:
    """``train.init_from`` as the params file writes it (``None`` when absent, or when ``train`` is no mapping:
    the schema, checked by ingest, says what is wrong with it)."""
    train = raw.get("train")
    return train.get("init_from") if isinstance(train, dict) else None


def pin(params_path: Path, root: Path) -> dict[str, Any]:
    """The version ``train.init_from`` names now, as the record train reads back.

    Args:
        params_path: The params file.
        root: The project root, whose tracking store and registry are asked.

    Returns:
        ``{"init_from": None}``, or the value as written with the version's ``uri``, ``name``, ``version`` and
        ``run_id``.

    Raises:
        PipelineError: If the params do not validate, or the store does not answer or holds no such version.
    """
    if requested(read_raw_params(params_path)) is None:
        return dict(NONE)
    from pipeline import tracking
    from pipeline.serving import source

    params = load_params(params_path)
    try:
        client = tracking.configure(root, must_exist=True)
    except PipelineError as exc:  # no local store yet, or a server that does not answer
        raise PipelineError(f"{source.KEY} = {params.train.init_from!r}: {exc}") from None
    return source.pin(source.resolve(client, params.train.init_from, params.registered_model_name),
                      params.train.init_from)


def read_pin(path: Path, init_from: str | int | None) -> dict[str, Any] | None:
    """The version resolve pinned in ``path`` for ``train.init_from = init_from`` (``None`` for none).

    Raises:
        PipelineError: Naming ``path`` if it is not resolve's record for that value: a file from other params, as
            ``dvc repro -s train`` leaves after an edit of ``train.init_from``.
    """
    return check_pin(read_json(path), init_from, str(path), "run `dvc repro`: resolve runs before train")


def check_pin(record: Any, init_from: str | int | None, where: str, remedy: str) -> dict[str, Any] | None:
    """``record`` (from ``where``) if it pins the version for ``train.init_from = init_from``; ``None`` for none.

    Raises:
        PipelineError: Naming ``where`` and saying ``remedy`` if it is a record for another value, or none.
    """
    held = record.get("init_from", record) if isinstance(record, dict) else record
    fits = record == NONE if init_from is None else isinstance(record, dict) and all(k in record for k in KEYS)
    if not fits or str(held) != str(init_from):
        raise PipelineError(f"{where}: pins train.init_from = {held!r}, params.yaml has {init_from!r}; expected the "
                            f"resolve stage's record for these params ({remedy})")
    return None if init_from is None else record


def main() -> None:
    """Write the version ``train.init_from`` names now to ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "out")
    pinned = pin(args.params, Path.cwd())
    write_json(args.out, pinned)
    if pinned["init_from"] is not None:
        print(f"resolve: train.init_from = {pinned['init_from']} is {pinned['uri']} (run {pinned['run_id']})",
              flush=True)


if __name__ == "__main__":
    run_main(main, "resolve")
