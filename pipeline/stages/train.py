"""Stage train: fit the network with Lightning on CPU or GPU, seeded and deterministic, tracked in MLflow.

Writes ``--out`` (the model bundle: weights, architecture, fitted preprocessing) and ``--info`` (the MLflow
run id that evaluate continues, and a summary of the fit).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten, load_params, require_task
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_dir, read_state, write_json
from pipeline.preprocess.impute import Imputer
from pipeline.stages.common import read_schema, stage_args

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable
# cuBLAS needs this set before CUDA initialises to give deterministic results (see torch's reproducibility notes).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from pipeline.nets import build_net, net_spec  # noqa: E402
from pipeline.training.callbacks import BestWeights, EpochHistory  # noqa: E402
from pipeline.training.checkpoints import Checkpoints, SafeCheckpointIO, resumable  # noqa: E402
from pipeline.training.data import ScaledDataModule, read_encoders  # noqa: E402
from pipeline.training.lr_find import LRFinding, find_lr  # noqa: E402
from pipeline.training.module import LitModel  # noqa: E402

# The code a checkpoint's fingerprint covers, with this module: a change to any of these makes an old checkpoint someone else's.
TRAINING_CODE = (
    "pipeline.training.module", "pipeline.training.data", "pipeline.training.callbacks",
    "pipeline.training.checkpoints", "pipeline.training.augment", "pipeline.nets", "pipeline.nets.fnn",
    "pipeline.nets.cnn", "pipeline.nets.rnn",
)


@dataclass
class FitResult:
    """What a fit produced."""

    spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    epochs: int
    device: str
    resumed_from: int | None = None  # the first epoch this process trained, when it resumed a checkpoint
    lr_finding: LRFinding | None = field(default=None, repr=False)


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and the data-loader worker hint (data is in memory on purpose)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # also hides the "Tip:" advert
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # under DDP each process logs figures already summed over processes (train) or computed on all of val
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")


def check_accelerator(accelerator: str, precision: str = "32-true") -> None:
    """Refuse ``gpu``, or bf16 mixed precision, where CUDA is absent, before any run is opened or time is spent."""
    cuda = torch.cuda.is_available()
    if accelerator == "gpu" and not cuda:
        raise PipelineError("train.accelerator = 'gpu': expected a CUDA device, found none (use 'auto' or 'cpu')")
    if precision == "bf16-mixed" and (accelerator == "cpu" or not cuda or not torch.cuda.is_bf16_supported()):
        where = "train.accelerator = 'cpu'" if accelerator == "cpu" else "no CUDA device with bfloat16 support"
        raise PipelineError(f"train.precision = 'bf16-mixed' with {where}: expected '32-true' (bf16 is for GPUs)")


def strategy(name: str, world: int) -> Any:
    """Lightning's strategy for ``train.strategy``: one device as it is, DDP for several processes.

    DDP's processes come from Lightning's own launcher (which reruns this stage's command once per extra
    device), from torchrun, or from SLURM; only the first process tracks and writes (see :func:`process_rank`).
    """
    if world == 1 and name == "auto":
        return "auto"
    return "ddp"


def on_cuda(accelerator: str) -> bool:
    """Whether ``train.accelerator`` trains on CUDA here."""
    return accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())


def process_rank(devices: int) -> int:
    """This process's global rank among the training processes: 0 for the one that tracks and writes.

    torchrun sets ``RANK``, SLURM ``SLURM_PROCID``; Lightning's launcher sets ``NODE_RANK`` and ``LOCAL_RANK``
    for the processes it starts (and the user sets ``NODE_RANK`` on each node).
    """
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name])
    return int(os.environ.get("NODE_RANK", 0)) * devices + int(os.environ.get("LOCAL_RANK", 0))


def fingerprint(params: Params, scaled_dir: Path, n_outputs: int, class_weight: list[float] | None, task: str) -> str:
    """What a training is of: the settings that change its weights, the data it reads and the code it runs.

    A checkpoint is resumed only under the same fingerprint. ``checkpoint_every`` and ``lr_find`` are left out:
    neither changes the weights.
    """
    from pipeline.tracking import file_md5

    train = params.train.model_dump(mode="json", exclude={"checkpoint_every", "lr_find"})
    settings = {"seed": params.seed, "model": params.model.model_dump(mode="json"), "train": train,
                "target": params.data.target, "n_outputs": n_outputs, "class_weight": class_weight, "task": task,
                "torch": torch.__version__, "lightning": L.__version__}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(Path(scaled_dir).iterdir()):
        if path.name.startswith(("train.", "val.", "encoder.")):
            digest.update(f"{path.name}:{file_md5(path)}".encode())
    for path in (__file__, *(importlib.import_module(name).__file__ for name in TRAINING_CODE)):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def fit(
    params: Params,
    scaled_dir: Path,
    n_outputs: int,
    sink: Any = None,
    class_weight: list[float] | None = None,
    task: str = "classification",
    checkpoints: Path | None = None,
) -> FitResult:
    """Train the configured network on ``scaled_dir``'s train split, early-stopping on its val split.

    With ``checkpoints``, the whole training state is saved there every ``train.checkpoint_every`` epochs, and
    an unfinished training of the same params, data and code left there is resumed where it stopped; on the
    CPU the result is bit-identical to an uninterrupted run.

    Args:
        params: The validated params (reads ``seed``, ``model`` and ``train``).
        scaled_dir: The scale stage's output.
        n_outputs: Output width: the number of classes, or 1 for regression.
        sink: Optional per-epoch metrics callback ``sink(metrics, epoch)``.
        class_weight: Optional loss weight per class index (from clean's ``class_weight`` strategy).
        task: ``classification`` or ``regression``.
        checkpoints: Folder for ``last.ckpt`` and ``best.ckpt``; None saves none.

    Returns:
        The best epoch's weights (a CPU state dict), its spec and the per-epoch history.
    """
    cfg = params.train
    check_accelerator(cfg.accelerator, cfg.precision)
    quiet_lightning()
    torch.set_num_threads(cfg.cpu_threads)
    L.seed_everything(params.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True)
    data = ScaledDataModule(scaled_dir, params.data.target, cfg.batch_size, params.seed, task)
    data.setup()
    spec = net_spec(params.model, data.modality, data.input_shape, n_outputs)
    module = LitModel(
        build_net(spec), task, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, class_weight,
        batch_size=cfg.rows_per_step(len(data.train_set)), l1=cfg.l1, clip=cfg.gradient_clip.mode,
        clip_max=cfg.gradient_clip.max, label_smoothing=cfg.label_smoothing, regression_loss=cfg.regression_loss,
        schedule=cfg.schedule.model_dump(), max_epochs=cfg.max_epochs, augment=cfg.augment.model_dump(),
        modality=data.modality,
    )
    finding = None
    if cfg.lr_find:
        x, y = data.train_set.tensors
        finding = find_lr(module.net, module._loss, module.make_optimizer, x, y, module.batch_size, params.seed)
    stop = cfg.early_stopping
    history = EpochHistory(sink)
    best = BestWeights(stop.monitor, stop.direction, stop.min_delta)
    early = L.pytorch.callbacks.EarlyStopping(
        monitor=stop.monitor, mode=stop.direction, patience=stop.patience, min_delta=stop.min_delta,
        check_finite=False,
    )
    callbacks: list[L.Callback] = [history, best, early]
    resume = None
    if checkpoints is not None and cfg.checkpoint_every > 0:
        mark = fingerprint(params, scaled_dir, n_outputs, class_weight, task)
        resume = resumable(checkpoints, mark)
        callbacks.append(Checkpoints(checkpoints, cfg.checkpoint_every, mark, lambda: best.best_epoch))
        if resume is not None:
            print(f"train: resuming from {resume[0]}: {resume[1]} of {cfg.max_epochs} epochs done", flush=True)
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy(cfg.strategy, cfg.world_size),
        # batch statistics over the whole batch, as one process takes them (PyTorch syncs them on GPUs only; CPU
        # processes normalise by their own share's statistics, as plain DDP does)
        sync_batchnorm=cfg.world_size > 1 and on_cuda(cfg.accelerator),
        precision=cfg.precision,
        plugins=[SafeCheckpointIO()],
        max_epochs=cfg.max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=data, ckpt_path=None if resume is None else resume[0])
    if best.weights is None:
        raise PipelineError(f"train: {stop.monitor} was never finite; nothing to save")
    return FitResult(
        spec=spec,
        state_dict=best.weights,
        history=history.history,
        best_epoch=int(best.best_epoch),
        best_value=float(best.best_value),
        epochs=trainer.current_epoch,
        device=str(trainer.strategy.root_device),
        resumed_from=None if resume is None else resume[1],
        lr_finding=finding,
    )


def log_lr_finding(finding: LRFinding, params: Params) -> None:
    """Record the learning-rate range test in the active MLflow run: the suggestion, the curve and its plot."""
    import tempfile

    import mlflow

    from pipeline.training.lr_find import lr_find_png

    mlflow.log_metric("lr_find/suggestion", finding.suggestion)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "lr_find.png"
        lr_find_png(png, finding, params.train.lr, f"{params.data.name} {params.model.kind}: learning-rate range test")
        mlflow.log_artifact(str(png), artifact_path="lr_find")
    print(f"train: lr_find suggests train.lr = {finding.suggestion:.3g} (training used {params.train.lr:g})")


def log_lineage(root: Path, raw: Path) -> None:
    """Log what the run was made from: the config and lock files, the data profile, the environment, the diff."""
    from pipeline import tracking

    import mlflow

    for folder, files in (("config", [root / n for n in ("params.yaml", "dvc.yaml", "dvc.lock")]),
                          ("data", [raw / n for n in ("profile.json", "schema.json")])):
        for path in files:
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path=folder)
    mlflow.log_text(tracking.pip_freeze(), "environment/pip-freeze.txt")
    diff = tracking.git_diff(root)
    if diff:  # a dirty run: the uncommitted change to tracked files is part of what made it
        mlflow.log_text(diff, "git/diff.patch")


def model_summary(spec: dict[str, Any]) -> str:
    """The network, layer by layer with parameter counts, and its spec: what ``print(model)`` would not total."""
    net = build_net(spec)
    lines = [f"{'layer':<40} {'shape':<20} {'parameters':>12}"]
    for name, parameter in net.named_parameters():
        lines.append(f"{name:<40} {str(tuple(parameter.shape)):<20} {parameter.numel():>12,}")
    total = sum(p.numel() for p in net.parameters())
    lines += [f"{'total (trainable)':<61} {total:>12,}", "", str(net), "", json.dumps(spec, indent=2)]
    return "\n".join(lines) + "\n"


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The seed of each restart: ``seed`` itself, then ``seed + 1``, ... (wrapping within the 32-bit range)."""
    return [(seed + i) % 2**32 for i in range(restarts)]


def best_restart(results: list[FitResult], direction: str) -> int:
    """The restart whose best validation value (the early-stopping monitor) is best; the first on a tie."""
    values = [r.best_value if direction == "min" else -r.best_value for r in results]
    return values.index(min(values))


def restart_plan(params: Params, checkpoints: Path) -> list[tuple[Params, Path]]:
    """Each restart's params (its seed; the range test only in the first) and checkpoint folder."""
    if params.train.restarts == 1:
        return [(params, checkpoints)]
    plan = []
    for i, seed in enumerate(restart_seeds(params.seed, params.train.restarts)):
        # the range test is about the data and the net, not the draw: once is enough
        train = params.train.model_copy(update={"lr_find": params.train.lr_find and i == 0})
        plan.append((params.model_copy(update={"seed": seed, "train": train}), checkpoints / f"restart-{i}"))
    return plan


def fit_restarts(params: Params, experiment: str, args: Any, n_outputs: int, class_weight: list[float] | None,
                 task: str) -> tuple[list[FitResult], list[str]]:
    """Train ``train.restarts`` networks, each from its own seed, each in a nested MLflow run of the active one.

    Returns:
        Each restart's fit, and its MLflow run id.
    """
    import mlflow

    from pipeline import tracking

    plan = restart_plan(params, args.checkpoints)
    results, run_ids = [], []
    for i, (settings, folder) in enumerate(plan):
        seed = settings.seed
        with tracking.tracked_run(experiment_id=experiment, run_name=f"restart {i} (seed {seed})", nested=True) as run:
            mlflow.log_params({"restart": i, "seed": seed})
            mlflow.set_tags({"seed": str(seed), "restart": str(i), "model.kind": params.model.kind, "task": task})
            print(f"train: restart {i + 1} of {len(plan)} (seed {seed})", flush=True)
            result = fit(settings, args.scaled, n_outputs, lambda m, e: mlflow.log_metrics(m, step=e), class_weight,
                         task, checkpoints=folder)
            mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs,
                                f"best/{params.train.early_stopping.monitor}": result.best_value})
        results.append(result)
        run_ids.append(run.info.run_id)
    return results, run_ids


def class_weights(weights: dict[str, float] | None, classes: list) -> list[float] | None:
    """Clean's per-class loss weights (``report.json``) in the order of the network's outputs, or ``None``."""
    return None if weights is None else [float(weights[str(c)]) for c in classes]


def main() -> None:
    """Train on ``--scaled`` and write the bundle to ``--out``, every restart's weights to ``--restarts`` and the
    run summary to ``--info``."""
    import mlflow
    import numpy as np
    from safetensors.torch import save_file

    from pipeline import tracking
    from pipeline.bundle import write_bundle
    from pipeline.io import atomic_file
    from pipeline.nets import ensemble_spec

    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "scaled", "out", "restarts", "info", "checkpoints")
    params = load_params(args.params)
    check_accelerator(params.train.accelerator, params.train.precision)
    root = Path.cwd()
    task = read_schema(args.raw).task
    require_task(params, task)
    classes = list(read_encoders(args.scaled).target.classes_) if task == "classification" else []
    n_outputs = len(classes) if task == "classification" else 1
    class_weight = read_state(args.clean / "report.json", lambda report: class_weights(report["class_weight"], classes))
    if process_rank(params.train.devices) != 0:
        # another process of a data-parallel training: it trains its share of every batch in step with the first
        # process, which alone talks to MLflow and writes the outputs
        for settings, folder in restart_plan(params, args.checkpoints):
            fit(settings, args.scaled, n_outputs, None, class_weight, task, checkpoints=folder)
        return
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, params.experiment_name, root)
    started = time.perf_counter()
    flat = flatten(params)
    stop = params.train.early_stopping
    with tracking.tracked_run(experiment_id=experiment, run_name=tracking.run_name(root, flat)) as run:
        mlflow.log_params(flat)
        world = params.train.world_size
        global_batch = params.train.batch_size if params.train.update == "mini_batch" else None
        mlflow.log_params({"train.processes": world,  # the batch is global; each process takes its share of it
                           "train.global_batch": global_batch if global_batch is not None else params.train.update,
                           "train.per_device_batch": math.ceil(global_batch / world) if global_batch is not None
                           else params.train.update})
        mlflow.set_tags({
            "seed": str(params.seed),
            "model.kind": params.model.kind,
            "task": task,
            **tracking.git_tags(root),
            **tracking.dvc_tags(root),
            **{f"data.md5.{s}": tracking.file_md5(args.scaled / f"{s}.parquet") for s in ("train", "val", "test")},
            **{f"data.md5.{s}.images": tracking.file_md5(args.scaled / f"{s}.npy")
               for s in ("train", "val", "test") if (args.scaled / f"{s}.npy").is_file()},
        })
        log_lineage(root, args.raw)
        if params.train.restarts == 1:
            results = [fit(params, args.scaled, n_outputs, lambda m, e: mlflow.log_metrics(m, step=e), class_weight,
                           task, checkpoints=args.checkpoints)]
            run_ids = [run.info.run_id]
        else:
            results, run_ids = fit_restarts(params, experiment, args, n_outputs, class_weight, task)
        chosen = best_restart(results, stop.direction)
        result = results[chosen]  # the best single network: its curves are this run's, the one evaluate plots
        ensemble = params.evaluate.ensemble
        if len(results) > 1:
            for row in result.history:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            best = np.array([r.best_value for r in results])
            mlflow.log_metrics({f"restarts/best/{stop.monitor}/mean": float(best.mean()),
                                f"restarts/best/{stop.monitor}/std": float(best.std(ddof=1))})
            mlflow.set_tags({"restarts.selected": "ensemble" if ensemble else str(chosen),
                             "restarts.run_ids": ",".join(run_ids)})
        mlflow.set_tags({**tracking.environment_tags(root), "device": result.device})
        members = {f"members.{i}.{k}": v for i, r in enumerate(results) for k, v in r.state_dict.items()}
        spec, state = (ensemble_spec(result.spec, len(results), task), members) if ensemble else (
            result.spec, result.state_dict)
        mlflow.log_text(model_summary(spec), "model/summary.txt")
        if result.resumed_from is not None:
            mlflow.set_tag("resumed_from_epoch", str(result.resumed_from))
        if results[0].lr_finding is not None:
            log_lr_finding(results[0].lr_finding, params)
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs, "train_seconds": seconds})
        # the bundle copies the fitted steps as they are: one that cannot be loaded stops train here, naming it
        # (the schema and encoders were read above)
        read_state(args.clean / "imputer.json", Imputer.from_dict)
        with atomic_dir(args.out) as out:
            write_bundle(out, spec, state, args.raw, args.clean, args.scaled)
        with atomic_file(args.restarts) as tmp:  # every restart, for evaluate's mean and spread of the test metric
            save_file({k: v.detach().cpu().contiguous() for k, v in members.items()}, tmp)
        finding = results[0].lr_finding
        write_json(args.info, {
            "run_id": run.info.run_id,
            "experiment_id": experiment,
            "experiment": params.experiment_name,
            "device": result.device,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            f"best_{stop.monitor.replace('/', '_')}": result.best_value,
            "resumed_from_epoch": result.resumed_from,
            "lr_find": None if finding is None else {
                "suggestion": finding.suggestion, "lrs": finding.lrs, "losses": finding.losses,
            },
            "monitor": stop.monitor,
            "selected": "ensemble" if ensemble else chosen,
            "restarts": [{"restart": i, "seed": seed, "run_id": run_id, "best_epoch": r.best_epoch,
                          "best_value": r.best_value, "epochs": r.epochs}
                         for i, (seed, run_id, r) in enumerate(zip(restart_seeds(params.seed, len(results)), run_ids,
                                                                  results, strict=True))],
            "history": result.history,
        })
    last = result.history[-1]
    metric = "val/acc" if task == "classification" else "val/mae"
    print(
        f"train: {params.model.kind} ({task}) on {result.device}: {result.epochs} epochs in {seconds:.1f} s, best "
        f"epoch {result.best_epoch} ({stop.monitor} {result.best_value:.4g}); last train/loss "
        f"{last['train/loss']:.4f} {metric} {last[metric]:.4f}; MLflow run {run.info.run_id}"
    )
    if len(results) > 1:
        values = ", ".join(f"{r.best_value:.4g}" for r in results)
        kept = f"their average (ensemble of {len(results)})" if ensemble else f"restart {chosen}"
        print(f"train: {len(results)} restarts, best {stop.monitor} {values}; the model is {kept}")


if __name__ == "__main__":
    run_main(main, "train")
