"""One training: the configured network fitted with Lightning on the scale stage's output, seeded and
deterministic, resumable from its checkpoints, on CPU or GPU, on one device or several (DDP)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# cuBLAS needs this set before CUDA initialises to give deterministic results (see torch's reproducibility notes).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pipeline.config import Params, TrainConfig  # noqa: E402
from pipeline.config.auto import budget  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.nets import FIXED_LENGTH, build_net, net_spec  # noqa: E402
from pipeline.training.arrays import load_xy, modality  # noqa: E402
from pipeline.training.callbacks import BestWeights, EarlyStop, EpochHistory, FrozenLayers  # noqa: E402
from pipeline.training.checkpoints import Checkpoints, SafeCheckpointIO, resumable  # noqa: E402
from pipeline.training.data import ScaledDataModule  # noqa: E402
from pipeline.training.lr_find import LRFinding, find_lr  # noqa: E402
from pipeline.training.module import LitModel  # noqa: E402
from pipeline.training.transfer import Parent, hold_norm_statistics, set_frozen, start_from  # noqa: E402

# The code a checkpoint's fingerprint covers, with this module: a change to any of these makes an old checkpoint someone else's.
TRAINING_CODE = (
    "pipeline.training.module", "pipeline.training.data", "pipeline.training.callbacks",
    "pipeline.training.checkpoints", "pipeline.training.augment", "pipeline.nets", "pipeline.nets.fnn",
    "pipeline.nets.cnn", "pipeline.nets.rnn", "pipeline.training.transfer",
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
    max_epochs: int = 0  # the epoch limit and early-stopping patience it ran with ('auto' sized by the data)
    patience: int = 0
    weight_decay: float = 0.0  # the L2 it ran with ('auto' sized by the data)
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


def check_lengths(params: Params, scaled_dir: Path) -> None:
    """Refuse, before any run is opened or time is spent, a val series longer than every train series when the
    configured network takes a fixed number of steps (a feed-forward net); other nets take any length.

    Raises:
        PipelineError: Naming the val file, the series, its length and ``model.kind: rnn`` or ``cnn``.
    """
    if params.model.kind in FIXED_LENGTH and modality(scaled_dir) == "sequence":
        load_xy(scaled_dir, "val", params.data.target, fixed=True)


def strategy(name: str, world: int, frozen: bool = False) -> Any:
    """Lightning's strategy for ``train.strategy``: one device as it is, DDP for several processes.

    DDP's processes come from Lightning's own launcher (which reruns this stage's command once per extra
    device), from torchrun, or from SLURM; only the first process tracks and writes (see :func:`process_rank`).
    With ``frozen`` layers (a fine-tuning's, see :class:`FrozenLayers`), DDP must look for parameters that get no
    gradient: it registered every parameter when it wrapped the net, and otherwise waits for the frozen ones' and
    fails the second step; once they are released they are reduced like the rest.
    """
    if world == 1 and name == "auto":
        return "auto"
    return "ddp_find_unused_parameters_true" if frozen else "ddp"


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


def fingerprint(params: Params, scaled_dir: Path, n_outputs: int, class_weight: list[float] | None, task: str,
                val_offsets: list[float] | None = None, parent: str | None = None) -> str:
    """What a training is of: the settings that change its weights, the data it reads, the weights it starts from
    (``parent``: their digest; an alias that moved is another training) and the code it runs.

    A checkpoint is resumed only under the same fingerprint. ``checkpoint_every``, ``lr_find`` and ``eval_chunk``
    are left out: none changes the weights.
    """
    from pipeline.io import file_md5

    train = params.train.model_dump(mode="json", exclude={"checkpoint_every", "lr_find", "eval_chunk"})
    settings = {"seed": params.seed, "model": params.model.model_dump(mode="json"), "train": train,
                "target": params.data.target, "n_outputs": n_outputs, "class_weight": class_weight, "task": task,
                "val_offsets": val_offsets, "parent": parent,
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
    val_offsets: list[float] | None = None,
    probes: tuple[L.Callback, ...] = (),
    parent: Parent | None = None,
) -> FitResult:
    """Train the configured network on ``scaled_dir``'s train split, early-stopping on its val split.

    With ``checkpoints``, the whole training state is saved there every ``train.checkpoint_every`` epochs, and
    an unfinished training of the same params, data and code left there is resumed where it stopped; on the
    CPU the result is bit-identical to an uninterrupted run.

    Args:
        params: The validated params (reads ``seed``, ``data.target``, ``model`` and ``train``).
        scaled_dir: The scale stage's output.
        n_outputs: Output width: the number of classes, or 1 for regression.
        sink: Optional per-epoch metrics callback ``sink(metrics, epoch)``.
        class_weight: Optional loss weight per class index (from clean's ``class_weight`` strategy).
        task: ``classification`` or ``regression``.
        checkpoints: Folder for ``last.ckpt``; None saves none.
        val_offsets: The bundle's prior-correction offsets, applied to validation (see :class:`LitModel`).
        probes: Callbacks that only observe (``benchmarks/stopping.py``): the fingerprint assumes the same weights.
        parent: The network to start from (``train.init_from``), loaded, frozen and slowed down as ``train.freeze``,
            ``unfreeze_epoch`` and ``loaded_lr_factor`` say; ``None``: random initial weights.

    Returns:
        The best epoch's weights (a CPU state dict), its spec, the per-epoch history and the sizes it ran with.
    """
    seeded(params)
    data, params = sized(params, scaled_dir, task)
    cfg, stop = params.train, params.train.early_stopping
    spec, module = build_module(params, data, n_outputs, task, class_weight, val_offsets, parent)
    finding = lr_finding(module, data, params.seed) if cfg.lr_find else None
    history, best = EpochHistory(sink), BestWeights(stop.monitor, stop.direction, stop.min_delta)
    callbacks: list[L.Callback] = [history, best, early_stopping(cfg), *probes]
    if module.finetune.frozen:
        callbacks.append(FrozenLayers(module.finetune))
    resume = None
    if checkpoints is not None and cfg.checkpoint_every > 0:
        mark = fingerprint(params, scaled_dir, n_outputs, class_weight, task, val_offsets,
                           None if parent is None else parent.digest)
        resume = resume_from(checkpoints, mark, cfg)
        callbacks.append(Checkpoints(checkpoints, cfg.checkpoint_every, mark))
    trainer = build_trainer(cfg, callbacks, frozen=bool(module.finetune.frozen))
    run_trainer(trainer, module, data, None if resume is None else resume[0])
    return fit_result(cfg, spec, trainer, best, history, None if resume is None else resume[1], finding)


def run_trainer(trainer: L.Trainer, module: LitModel, data: ScaledDataModule, resume: Path | None) -> None:
    """``trainer.fit``, with Ctrl-C raised as ``KeyboardInterrupt`` as everywhere else in the pipeline.

    Lightning catches Ctrl-C, shuts down, sets SIGINT to be ignored and calls ``sys.exit(1)``: the stage would end
    with exit 1 and no word, its MLflow run FAILED rather than KILLED, and a second Ctrl-C would be ignored.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    except SystemExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Lightning's exit, raised while handling Ctrl-C
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, handler)


def fit_result(cfg: TrainConfig, spec: dict[str, Any], trainer: L.Trainer, best: BestWeights, history: EpochHistory,
               resumed_from: int | None, finding: LRFinding | None) -> FitResult:
    """What the finished training produced, with the sizes ``cfg`` (sized) ran with.

    Raises:
        PipelineError: If the monitored figure was never finite, so no epoch's weights were kept.
    """
    stop = cfg.early_stopping
    if best.weights is None:
        raise PipelineError(f"train: {stop.monitor} was never finite; nothing to save")
    return FitResult(
        spec=spec, state_dict=best.weights, history=history.history, best_epoch=int(best.best_epoch),
        best_value=float(best.best_value), epochs=trainer.current_epoch, device=str(trainer.strategy.root_device),
        resumed_from=resumed_from, lr_finding=finding, max_epochs=int(cfg.max_epochs),
        patience=int(stop.patience), weight_decay=float(cfg.weight_decay),
    )


def seeded(params: Params) -> None:
    """Check the hardware, quieten Lightning and make this process's training a function of ``params.seed``."""
    cfg = params.train
    check_accelerator(cfg.accelerator, cfg.precision)
    quiet_lightning()
    torch.set_num_threads(cfg.cpu_threads)
    L.seed_everything(params.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True)


def sized(params: Params, scaled_dir: Path, task: str) -> tuple[ScaledDataModule, Params]:
    """The train and val tensors, and ``params`` with the ``auto`` epochs, patience and weight decay sized by this
    split's train rows (resuming gives the same sizes)."""
    # batches are cut by the module (rows_per_step); the data module only hands over the tensors and their order
    data = ScaledDataModule(scaled_dir, params.data.target, params.seed, task,
                            fixed_length=params.model.kind in FIXED_LENGTH, eval_chunk=params.train.eval_chunk)
    data.setup()
    return data, params.model_copy(update={"train": budget(params.train, len(data.train_set))})


def build_module(params: Params, data: ScaledDataModule, n_outputs: int, task: str,
                 class_weight: list[float] | None, val_offsets: list[float] | None,
                 parent: Parent | None = None) -> tuple[dict[str, Any], LitModel]:
    """The network's spec and the module that trains it (``params.train`` already sized by ``budget``).

    Building the network draws its initial weights from the seeded torch RNG (a layer loaded from ``parent`` keeps
    the draw's place in the RNG's stream, so the fresh layers are what they would be from scratch).
    """
    cfg = params.train
    spec = net_spec(params.model, data.modality, data.input_shape, n_outputs)
    net = build_net(spec)
    finetune = None if parent is None else start_from(net, spec, parent, cfg.freeze, cfg.unfreeze_epoch,
                                                      cfg.loaded_lr_factor)
    module = LitModel(net=net, cfg=cfg, task=task, rows_per_step=cfg.rows_per_step(len(data.train_set)),
                      modality=data.modality, class_weight=class_weight, val_offsets=val_offsets, finetune=finetune)
    return spec, module


def lr_finding(module: LitModel, data: ScaledDataModule, seed: int) -> LRFinding:
    """The learning-rate range test on a copy of the module's network (the module and the RNG are left as they
    were)."""
    x, y = data.train_set.tensors
    finetune = module.finetune

    def hold(net: nn.Module) -> None:  # as FrozenLayers holds them in the first epoch
        set_frozen(net, finetune.frozen)
        hold_norm_statistics(net, finetune.frozen)

    return find_lr(module.net, module._loss, module.make_optimizer, x, y, module.rows_per_step, seed,
                   hold=hold if finetune.frozen_at(0) else None)


def early_stopping(cfg: TrainConfig) -> EarlyStop:
    """Early stopping as ``train.early_stopping`` says (a non-finite figure is the epoch history's to report,
    with its own message)."""
    stop = cfg.early_stopping
    return EarlyStop(stop.monitor, stop.direction, stop.patience, stop.min_delta)


def resume_from(checkpoints: Path, mark: str, cfg: TrainConfig) -> tuple[Path, int] | None:
    """The checkpoint in ``checkpoints`` of this very training (fingerprint ``mark``) to resume, and the epochs it
    has done; None to start afresh. Says so when it resumes."""
    resume = resumable(checkpoints, mark)
    if resume is not None:
        print(f"train: resuming from {resume[0]}: {resume[1]} of {cfg.max_epochs} epochs done", flush=True)
    return resume


def build_trainer(cfg: TrainConfig, callbacks: list[L.Callback], frozen: bool = False) -> L.Trainer:
    """The Lightning trainer for ``train``'s hardware, precision and epoch limit: deterministic, silent, with the
    pipeline's own checkpoints (:class:`Checkpoints`) instead of Lightning's; ``frozen``: the net has layers
    :class:`FrozenLayers` holds (see :func:`strategy`)."""
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy(cfg.strategy, cfg.world_size, frozen),
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
        limit_val_batches=0,  # the module validates at the end of each epoch's step (see LitModel.validate)
        callbacks=callbacks,
    )
