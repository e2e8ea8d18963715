"""Training checkpoints without pickle: Lightning's checkpoint dict stored as one safetensors file.

Lightning's own checkpoints are ``torch.save`` pickles, and loading a pickle can run code. Here every tensor of
the checkpoint (weights, optimizer moments, RNG states, the best weights so far) goes into a safetensors file
and everything else (epoch counters, loop progress, schedule and early-stopping state, float settings) into
JSON in the same file's metadata. Loading parses JSON and raw tensor bytes, nothing more.

``Checkpoints`` writes ``last.ckpt`` at epoch boundaries (the best epoch's weights are in it, as the best-weights
callback's state); ``resumable`` says whether a ``last.ckpt`` left by an interrupted run may be resumed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import SafetensorError, safe_open

from pipeline.errors import PipelineError
from pipeline.io import sweep_temporaries, write_safetensors

STRUCTURE = "pipeline.checkpoint"  # the metadata key holding the JSON structure


PLAIN = (str, int, bool, type(None))  # stored in JSON as they are


def _plain(value: Any) -> bool:
    return type(value) in PLAIN or (type(value) is float and math.isfinite(value))


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """JSON-ready form of ``value``; tensors are moved into ``tensors`` and replaced by a reference."""
    if _plain(value):
        return value
    if type(value) is dict and all(type(k) is str and _plain(v) for k, v in value.items()):
        # a history row: the common case, taken without a call per value (a long training has thousands)
        return {"__dict__": [[k, v] for k, v in value.items()]}
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous().clone()  # safetensors refuses shared storage
        return {"__tensor__": key}
    if isinstance(value, dict):
        # pairs, not an object: optimizer state is keyed by parameter index, and JSON keys are text only
        return {"__dict__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}  # inf / nan: a best-so-far that was never set
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint{where}: expected tensors, numbers, text, lists or dicts, got {type(value).__name__}")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dict__" in value:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
        raise ValueError(f"unknown entry {sorted(value)}")
    return value


def save(checkpoint: dict[str, Any], path: Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically: a crash mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(checkpoint, tensors, ""))
    write_safetensors(path, tensors, metadata={STRUCTURE: structure})


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint :func:`save` wrote, on the CPU.

    Raises:
        PipelineError: Naming the file, if it is missing, truncated or not one of these checkpoints.
    """
    path = Path(path)
    try:
        # one open for the tensors and the metadata: a save renamed over the file meanwhile (another process
        # polling a running training) cannot mix two checkpoints' halves
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        return _decode(json.loads(metadata[STRUCTURE]), tensors)
    except (OSError, SafetensorError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path}: expected a training checkpoint written by this pipeline ({exc})") from None


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint I/O through :func:`save` and :func:`load` (no pickle either way)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load(Path(path))

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


class Checkpoints(L.Callback):
    """Save ``last.ckpt`` every ``every`` epochs, and when training ends, in ``folder``.

    The file is the whole training state (weights, optimizer, schedule, early stopping, history, the best
    weights so far, RNG states), so a rerun resumes at the epoch after the last save. ``fingerprint`` identifies
    what was being trained (params, data, code); a checkpoint is resumed only under the same fingerprint, and
    only if the run that wrote it had not finished. There is no separate checkpoint of the best epoch: nothing
    read it, and copying the whole state at every improvement cost 7% of a penguins-sized fit.

    Args:
        folder: Where ``last.ckpt`` goes.
        every: Epochs between saves (the final epoch is always saved).
        fingerprint: What the checkpoint belongs to.
    """

    def __init__(self, folder: Path, every: int, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.every = every
        self.fingerprint = fingerprint
        self.finished = False

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "finished": self.finished}

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # a save cut short by SIGKILL leaves its temporary name behind
            sweep_temporaries(self.folder)
            (self.folder / "best.ckpt").unlink(missing_ok=True)  # written by earlier versions; nothing reads it

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            trainer.save_checkpoint(self.folder / "last.ckpt")

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.finished = True  # a rerun with the same fingerprint trains afresh rather than "resuming" a done run
        trainer.save_checkpoint(self.folder / "last.ckpt")


def resumable(folder: Path, fingerprint: str) -> tuple[Path, int] | None:
    """``folder/last.ckpt`` and the epochs it completed, if an unfinished training with ``fingerprint`` left it.

    Checkpoints of other params, data or code, of a finished run, or unreadable ones are removed so they
    are never mistaken for this training's.
    """
    last = Path(folder) / "last.ckpt"
    if not last.is_file():
        return None
    try:
        checkpoint = load(last)
    except PipelineError:
        checkpoint = {}
    state = checkpoint.get("callbacks", {}).get(Checkpoints.__qualname__, {})
    if state.get("fingerprint") == fingerprint and state.get("finished") is False:
        return last, int(checkpoint["epoch"]) + 1
    last.unlink(missing_ok=True)
    return None
