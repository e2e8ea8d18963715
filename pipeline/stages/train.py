"""Stage train: fit the network with Lightning on CPU or GPU, seeded and deterministic, tracked in MLflow.

Writes ``--out`` (the model bundle: weights, architecture, fitted preprocessing) and ``--info`` (the MLflow
run id that evaluate continues, and a summary of the fit).

:func:`train` does the work and nothing else (no MLflow, no printing, no files but the checkpoints): search and
cross-validation call it in-process. :func:`main` tracks, prints and writes around it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.config import Params, flatten, load_params, require_task
from pipeline.decision import Decision
from pipeline.errors import PipelineError, run_main
from pipeline.io import read_state
from pipeline.stages.common import read_schema, stage_args
from pipeline.stages.train_record import (
    TrackedRestarts, log_outputs, log_result, log_start, print_summary, train_info, write_outputs,
)

from pipeline.nets import ensemble_spec, net_spec
from pipeline.training import transfer
from pipeline.training.arrays import load_xy, modality, read_encoders
from pipeline.training.fit import FitResult, check_accelerator, check_lengths, process_rank
from pipeline.training.lr_find import LRFinding
from pipeline.training.restarts import RestartRunner, best_restart, fit_restarts, restart_seeds, untracked
from pipeline.training.transfer import Parent

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable


@dataclass(frozen=True)
class TrainFolders:
    """What train reads and where it checkpoints: ingest's, clean's and scale's output folders."""

    raw: Path
    clean: Path
    scaled: Path
    checkpoints: Path


@dataclass(frozen=True)
class TrainInputs:
    """What train takes from the data stages' outputs, besides the scaled data itself."""

    task: str
    params: Params  # 'auto' values resolved for the task
    classes: list  # the network's outputs in order (empty for regression)
    class_weight: list[float] | None  # clean's per-class loss weights, in the order of ``classes``
    decision: Decision  # clean's decision rule (prior correction or argmax)

    @property
    def n_outputs(self) -> int:
        """The network's outputs: one per class, or one value."""
        return len(self.classes) if self.task == "classification" else 1


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced: every restart's fit, the one kept, and the model the bundle holds."""

    inputs: TrainInputs
    fits: list[FitResult]  # one per restart, in seed order
    seeds: list[int]
    chosen: int  # the restart with the best validation value
    spec: dict[str, Any]  # the model's: the chosen network's, or the ensemble of all of them
    state: dict[str, torch.Tensor]
    members: dict[str, torch.Tensor]  # every restart's weights, ``members.{i}.{name}``
    seconds: float

    @property
    def params(self) -> Params:
        """The resolved params trained with."""
        return self.inputs.params

    @property
    def kept(self) -> FitResult:
        """The best single network: its curves and sizes are the run's (the ones evaluate plots)."""
        return self.fits[self.chosen]

    @property
    def ensemble(self) -> bool:
        """True when the model is the average of every restart."""
        return self.params.train.ensemble

    @property
    def selected(self) -> str | int:
        """``"ensemble"``, or the index of the kept restart."""
        return "ensemble" if self.ensemble else self.chosen

    @property
    def lr_finding(self) -> LRFinding | None:
        """The learning-rate range test (the first restart's: the only one that runs it)."""
        return self.fits[0].lr_finding


def class_weights(weights: dict[str, float] | None, classes: list) -> list[float] | None:
    """Clean's per-class loss weights (``report.json``) in the order of the network's outputs, or ``None``."""
    return None if weights is None else [float(weights[str(c)]) for c in classes]


def read_inputs(params: Params, folders: TrainFolders) -> TrainInputs:
    """The task, the params resolved for it, the classes, and clean's loss weights and decision rule.

    Raises:
        PipelineError: Naming the file whose content is not what the data stages write, or the params key.
    """
    task = read_schema(folders.raw).task
    resolved = require_task(params, task)
    classes = list(read_encoders(folders.scaled).target.classes_) if task == "classification" else []
    report = folders.clean / "report.json"
    class_weight = read_state(report, lambda r: class_weights(r["class_weight"], classes))
    decision = read_state(report, lambda r: Decision.from_report(r, classes))
    return TrainInputs(task, resolved, classes, class_weight, decision)


def train(params: Params, folders: TrainFolders, runner: RestartRunner = untracked,
          parent: Parent | None = None) -> TrainResult:
    """Train every restart, keep the best on validation, and build the model: that network, or the ensemble.

    Args:
        params: The params (``auto`` values are resolved here for the task ingest found).
        folders: The data stages' outputs to train on, and the checkpoints folder (the only one written).
        runner: Runs each restart's fit; the stage's opens its MLflow run and logs each epoch. The default tracks
            nothing, so this needs no active run.
        parent: The network every restart starts from (``train.init_from``, read by the stage), or ``None``.

    Returns:
        Every restart's fit, which is kept, and the model's spec and weights.
    """
    started = time.perf_counter()
    inputs = read_inputs(params, folders)
    params = inputs.params
    offsets = list(inputs.decision.offsets) if inputs.decision.corrects else None  # validation judges as used
    fits = fit_restarts(params, folders.scaled, inputs.n_outputs, inputs.class_weight, inputs.task,
                        folders.checkpoints, offsets, runner, parent)
    chosen = best_restart(fits, params.train.early_stopping.direction)
    members = {f"members.{i}.{k}": v for i, r in enumerate(fits) for k, v in r.state_dict.items()}
    if params.train.ensemble:
        spec, state = ensemble_spec(fits[chosen].spec, len(fits), inputs.task), members
    else:
        spec, state = fits[chosen].spec, fits[chosen].state_dict
    seeds = restart_seeds(params.seed, len(fits))
    return TrainResult(inputs, fits, seeds, chosen, spec, state, members, time.perf_counter() - started)


def starting_point(root: Path, inputs: TrainInputs, scaled: Path) -> tuple[Any, Parent | None]:
    """The registered version ``train.init_from`` names (resolved once, now, in the project's registry) and its
    network, checked against the network the params describe for ``scaled``'s data; ``(None, None)`` when training
    starts from random weights.

    Raises:
        PipelineError: If the version cannot be resolved or read, or cannot start this network (a different
            architecture, a layer of another shape): before any run is opened or any epoch trained.
    """
    params = inputs.params
    if params.train.init_from is None:
        return None, None
    from pipeline import tracking
    from pipeline.serving import source

    try:
        client = tracking.configure(root, must_exist=True)
    except PipelineError as exc:  # no local store yet, or a server that does not answer
        raise PipelineError(f"train.init_from = {params.train.init_from!r}: {exc}") from None
    found, parent = source.fetch(client, params.train.init_from, params.registered_model_name)
    x, _ = load_xy(scaled, "train", params.data.target, inputs.task)
    transfer.check(parent, net_spec(params.model, modality(scaled), tuple(x.shape[1:]), inputs.n_outputs))
    print(f"train: starting from {found.uri} (train.init_from = {found.requested}; run {found.run_id})", flush=True)
    return found, parent


def main() -> None:
    """Train on ``--scaled`` and write the bundle to ``--out``, every restart's weights to ``--restarts`` and the
    run summary to ``--info``."""
    from pipeline import tracking

    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "scaled", "out", "restarts", "info", "checkpoints")
    folders = TrainFolders(args.raw, args.clean, args.scaled, args.checkpoints)
    raw = load_params(args.params)
    check_accelerator(raw.train.accelerator, raw.train.precision)
    check_lengths(raw, folders.scaled)
    inputs = read_inputs(raw, folders)  # before a run is opened: a foreign report.json opens none
    root = Path.cwd()
    source, parent = starting_point(root, inputs, folders.scaled)  # a bad source opens no run either
    if process_rank(inputs.params.train.devices) != 0:
        # another process of a data-parallel training: it trains its share of every batch in step with the first
        # process, which alone writes to MLflow and writes the outputs
        train(inputs.params, folders, parent=parent)
        return
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, inputs.params.experiment_name, root)
    # named after what changed in params.yaml as written, 'auto' included
    with tracking.tracked_run(experiment_id=experiment, run_name=tracking.run_name(root, flatten(raw))) as run:
        log_start(root, inputs, folders, source)
        restarts = TrackedRestarts(experiment, run.info.run_id, inputs.params.train.restarts, inputs.task)
        result = train(inputs.params, folders, restarts, parent)
        log_result(root, result, restarts.run_ids)
        info = train_info(result, run.info.run_id, experiment, restarts.run_ids)
        write_outputs(result, folders, args.out, args.restarts, args.info, info)
        log_outputs(root, args.out, args.restarts, args.info)
    print_summary(result, run.info.run_id)


if __name__ == "__main__":
    run_main(main, "train")
