"""Stage train: fit the network with Lightning on CPU or GPU, seeded and deterministic, tracked in MLflow.

Writes ``--out`` (the model bundle: weights, architecture, fitted preprocessing) and ``--info`` (the MLflow
run id that evaluate continues, and a summary of the fit).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten, load_params, require_task
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.stages.common import stage_args

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable
# cuBLAS needs this set before CUDA initialises to give deterministic results (see torch's reproducibility notes).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from pipeline.nets import build_net, net_spec  # noqa: E402
from pipeline.training.callbacks import BestWeights, EpochHistory  # noqa: E402
from pipeline.training.data import ScaledDataModule  # noqa: E402
from pipeline.training.module import LitModel  # noqa: E402


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


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and the data-loader worker hint (data is in memory on purpose)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # also hides the "Tip:" advert
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def check_accelerator(accelerator: str) -> None:
    """Refuse ``gpu`` where CUDA is absent, before any run is opened or time is spent."""
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise PipelineError("train.accelerator = 'gpu': expected a CUDA device, found none (use 'auto' or 'cpu')")


def fit(
    params: Params,
    scaled_dir: Path,
    n_outputs: int,
    sink: Any = None,
    class_weight: list[float] | None = None,
    task: str = "classification",
) -> FitResult:
    """Train the configured network on ``scaled_dir``'s train split, early-stopping on its val split.

    Args:
        params: The validated params (reads ``seed``, ``model`` and ``train``).
        scaled_dir: The scale stage's output.
        n_outputs: Output width: the number of classes, or 1 for regression.
        sink: Optional per-epoch metrics callback ``sink(metrics, epoch)``.
        class_weight: Optional loss weight per class index (from clean's ``class_weight`` strategy).
        task: ``classification`` or ``regression``.

    Returns:
        The best epoch's weights (a CPU state dict), its spec and the per-epoch history.
    """
    cfg = params.train
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
        schedule=cfg.schedule.model_dump(), max_epochs=cfg.max_epochs,
    )
    stop = cfg.early_stopping
    history = EpochHistory(sink)
    best = BestWeights(stop.monitor, stop.mode, stop.min_delta)
    early = L.pytorch.callbacks.EarlyStopping(
        monitor=stop.monitor, mode=stop.mode, patience=stop.patience, min_delta=stop.min_delta, check_finite=False
    )
    check_accelerator(cfg.accelerator)
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        max_epochs=cfg.max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[history, best, early],
    )
    trainer.fit(module, datamodule=data)
    if best.state_dict is None:
        raise PipelineError(f"train: {stop.monitor} was never finite; nothing to save")
    return FitResult(
        spec=spec,
        state_dict=best.state_dict,
        history=history.history,
        best_epoch=int(best.best_epoch),
        best_value=float(best.best_value),
        epochs=trainer.current_epoch,
        device=str(trainer.strategy.root_device),
    )


def main() -> None:
    """Train on ``--scaled`` and write the bundle to ``--out`` and the run summary to ``--info``."""
    import mlflow

    from pipeline import tracking
    from pipeline.bundle import write_bundle

    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "scaled", "out", "info")
    params = load_params(args.params)
    check_accelerator(params.train.accelerator)
    root = Path.cwd()
    task = read_json(args.raw / "schema.json")["task"]
    require_task(params, task)
    target = read_json(args.scaled / "encoder.json")["target"]
    n_outputs = len(target["classes_"]) if task == "classification" else 1
    weights = read_json(args.clean / "report.json")["class_weight"]
    class_weight = None if weights is None else [weights[str(c)] for c in target["classes_"]]
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, params.experiment_name)
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_params(flatten(params))
        mlflow.set_tags({
            "seed": str(params.seed),
            "model.kind": params.model.kind,
            "task": task,
            **tracking.git_tags(root),
            **{f"data.md5.{s}": tracking.file_md5(args.scaled / f"{s}.parquet") for s in ("train", "val", "test")},
            **{f"data.md5.{s}.images": tracking.file_md5(args.scaled / f"{s}.npy")
               for s in ("train", "val", "test") if (args.scaled / f"{s}.npy").is_file()},
        })
        for name in ("params.yaml", "dvc.yaml"):
            if (root / name).is_file():
                mlflow.log_artifact(str(root / name), artifact_path="config")
        result = fit(params, args.scaled, n_outputs, lambda m, e: mlflow.log_metrics(m, step=e), class_weight, task)
        mlflow.set_tags({**tracking.environment_tags(), "device": result.device})
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs, "train_seconds": seconds})
        with atomic_dir(args.out) as out:
            write_bundle(out, result.spec, result.state_dict, args.raw, args.clean, args.scaled)
        write_json(args.info, {
            "run_id": run.info.run_id,
            "experiment_id": experiment,
            "experiment": params.experiment_name,
            "device": result.device,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            f"best_{params.train.early_stopping.monitor.replace('/', '_')}": result.best_value,
            "history": result.history,
        })
    last = result.history[-1]
    metric = "val/acc" if task == "classification" else "val/mae"
    print(
        f"train: {params.model.kind} ({task}) on {result.device}: {result.epochs} epochs in {seconds:.1f} s, best "
        f"epoch {result.best_epoch} ({params.train.early_stopping.monitor} {result.best_value:.4g}); last train/loss "
        f"{last['train/loss']:.4f} {metric} {last[metric]:.4f}; MLflow run {run.info.run_id}"
    )


if __name__ == "__main__":
    run_main(main, "train")
