"""The train stage's records of a :func:`~pipeline.stages.train.train` result: the MLflow run (its params, tags,
metrics, artifacts and each restart's nested run), the printed summary, and the files (the bundle, every
restart's weights, ``train.json``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline.config import Params, flatten
from pipeline.io import atomic_dir, read_state, write_json, write_safetensors
from pipeline.nets import build_net
from pipeline.preprocess.impute import Imputer
from pipeline.training.fit import FitResult
from pipeline.training.lr_find import LRFinding
from pipeline.training.restarts import Sink

if TYPE_CHECKING:  # the stage imports this module: at run time, these names are only annotations
    from pipeline.stages.train import TrainFolders, TrainInputs, TrainResult


class TrackedRestarts:
    """The stage's :data:`RestartRunner`: one restart logs its epochs to the active MLflow run; several each train
    in a nested run of it, with their seed and best values."""

    def __init__(self, experiment: str, parent_run_id: str, count: int, task: str) -> None:
        self.experiment, self.parent_run_id, self.count, self.task = experiment, parent_run_id, count, task
        self.run_ids: list[str] = []  # each restart's MLflow run, in order

    def __call__(self, index: int, settings: Params, fit_one: Callable[[Sink | None], FitResult]) -> FitResult:
        import mlflow

        from pipeline import tracking

        if self.count == 1:
            self.run_ids.append(self.parent_run_id)
            return tracked_fit(self.parent_run_id, fit_one)
        seed = settings.seed
        with tracking.tracked_run(experiment_id=self.experiment, run_name=f"restart {index} (seed {seed})",
                                  nested=True) as run:
            mlflow.log_params({"restart": index, "seed": seed})
            mlflow.set_tags({"seed": str(seed), "restart": str(index), "model.kind": settings.model.kind,
                             "task": self.task})
            print(f"train: restart {index + 1} of {self.count} (seed {seed})", flush=True)
            result = tracked_fit(run.info.run_id, fit_one)
            mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs,
                                f"best/{settings.train.early_stopping.monitor}": result.best_value})
        self.run_ids.append(run.info.run_id)
        return result


def tracked_fit(run_id: str, fit_one: Callable[[Sink | None], FitResult]) -> FitResult:
    """``fit_one`` with each epoch's metrics logged to run ``run_id``: in batches, all of them written by the time
    it returns or raises (a failed or stopped training keeps every epoch it finished)."""
    from pipeline import tracking

    metrics = tracking.MetricsBuffer(run_id)
    try:
        return fit_one(metrics)
    finally:
        metrics.flush()


def log_lineage(root: Path, raw: Path) -> None:
    """Log what the run was made from: the config and lock files, the data profile, the environment, the diff."""
    from pipeline import tracking

    import mlflow

    for folder, files in (("config", [root / n for n in ("params.yaml", "dvc.yaml", "dvc.lock")]),
                          ("data", [raw / n for n in ("profile.json", "schema.json")])):
        for path in files:
            if path.is_file():  # text files, masked as the diff is: a secret pasted into params.yaml stays here
                mlflow.log_text(tracking.redact(path.read_text(errors="replace")), f"{folder}/{path.name}")
    mlflow.log_text(tracking.pip_freeze(), "environment/pip-freeze.txt")
    diff = tracking.git_diff(root)
    if diff:  # a dirty run: the uncommitted change to tracked files is part of what made it
        mlflow.log_text(diff, "git/diff.patch")


def log_start(root: Path, inputs: TrainInputs, folders: TrainFolders, source: Any = None) -> None:
    """Record in the active MLflow run what it trains with: the params, the batch per process, the seed, the code
    and data versions, the environment, the lineage files, and the registered version it started from
    (``source``, a :class:`pipeline.serving.source.Source`, as params and tags: ``parent.name``, ``parent.version``,
    ``parent.run_id``; the version an alias named when it ran, not the alias).

    The environment is tagged here, before training, so a run that fails or is stopped says what it ran on too.
    """
    import mlflow

    from pipeline import tracking

    params, scaled = inputs.params, folders.scaled
    mlflow.log_params(flatten(params))
    world = params.train.world_size
    global_batch = params.train.batch_size if params.train.update == "mini_batch" else None
    mlflow.log_params({"train.processes": world,  # the batch is global; each process takes its share of it
                       "train.global_batch": global_batch if global_batch is not None else params.train.update,
                       "train.per_device_batch": math.ceil(global_batch / world) if global_batch is not None
                       else params.train.update})
    parent = {} if source is None else {f"parent.{k}": v for k, v in source.to_dict().items() if k != "requested"}
    mlflow.log_params(parent)
    mlflow.set_tags({
        **parent,
        "seed": str(params.seed),
        "model.kind": params.model.kind,
        "task": inputs.task,
        **tracking.git_tags(root),
        **tracking.dvc_tags(root, "train"),  # the data stages' outputs, never the previous run's model
        **tracking.environment_tags(root),
        **tune_origin(),
        **{f"data.md5.{s}": tracking.file_md5(scaled / f"{s}.parquet") for s in ("train", "val", "test")},
        **{f"data.md5.{s}.images": tracking.file_md5(scaled / f"{s}.npy")
           for s in ("train", "val", "test") if (scaled / f"{s}.npy").is_file()},
    })
    log_lineage(root, folders.raw)


def tune_origin() -> dict[str, str]:
    """``tune.study`` and ``tune.trial`` when ``tune --apply`` runs this training (it sets them in the environment),
    so the registered version says which search trial its params came from."""
    study, trial = os.environ.get("PIPELINE_TUNE_STUDY"), os.environ.get("PIPELINE_TUNE_TRIAL")
    return {"tune.study": study, "tune.trial": trial or "-"} if study else {}


def model_summary(spec: dict[str, Any]) -> str:
    """The network, layer by layer with parameter counts, and its spec: what ``print(model)`` would not total."""
    net = build_net(spec)
    lines = [f"{'layer':<40} {'shape':<20} {'parameters':>12}"]
    for name, parameter in net.named_parameters():
        lines.append(f"{name:<40} {str(tuple(parameter.shape)):<20} {parameter.numel():>12,}")
    total = sum(p.numel() for p in net.parameters())
    lines += [f"{'total (trainable)':<61} {total:>12,}", "", str(net), "", json.dumps(spec, indent=2)]
    return "\n".join(lines) + "\n"


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


def log_result(root: Path, result: TrainResult, run_ids: list[str]) -> None:
    """Record the fit in the active MLflow run: with restarts, the kept one's curves and their spread; the
    device, the model's summary, the range test, and the sizes trained with."""
    import mlflow
    import numpy as np

    from pipeline import tracking

    kept, monitor = result.kept, result.params.train.early_stopping.monitor
    if len(result.fits) > 1:  # one restart logged its curves as it trained, into this run
        curves = tracking.MetricsBuffer(mlflow.active_run().info.run_id)
        for row in kept.history:
            curves({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
        curves.flush()
        best = np.array([r.best_value for r in result.fits])
        mlflow.log_metrics({f"restarts/best/{monitor}/mean": float(best.mean()),
                            f"restarts/best/{monitor}/std": float(best.std(ddof=1))})
        mlflow.set_tags({"restarts.selected": str(result.selected), "restarts.run_ids": ",".join(run_ids)})
    mlflow.set_tag("device", kept.device)
    mlflow.log_text(model_summary(result.spec), "model/summary.txt")
    if kept.resumed_from is not None:
        mlflow.set_tag("resumed_from_epoch", str(kept.resumed_from))
    if result.lr_finding is not None:
        log_lr_finding(result.lr_finding, result.params)
    mlflow.log_metrics({"best_epoch": kept.best_epoch, "epochs": kept.epochs, "train_seconds": result.seconds,
                        "max_epochs": kept.max_epochs, "patience": kept.patience,
                        "weight_decay": kept.weight_decay})  # 'auto' as sized


def check_copied_state(clean: Path) -> None:
    """Refuse clean's fitted imputer when it cannot be loaded: the bundle copies it as it is, and a model that
    cannot be loaded must stop train here, naming the file (the schema and encoders were read before training).

    Raises:
        PipelineError: Naming ``imputer.json`` and what is wrong with it.
    """
    read_state(clean / "imputer.json", Imputer.from_dict)


def train_info(result: TrainResult, run_id: str, experiment_id: str, run_ids: list[str]) -> dict[str, Any]:
    """``train.json``: the MLflow run evaluate continues, and the fit: the kept restart's epochs, best value,
    sizes and curves, the range test, and every restart's seed, run and best value."""
    kept, finding, monitor = result.kept, result.lr_finding, result.params.train.early_stopping.monitor
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": result.params.experiment_name,
        "device": kept.device,
        "epochs": kept.epochs,
        "best_epoch": kept.best_epoch,
        f"best_{monitor.replace('/', '_')}": kept.best_value,
        "resumed_from_epoch": kept.resumed_from,
        "lr_find": None if finding is None else {
            "suggestion": finding.suggestion, "lrs": finding.lrs, "losses": finding.losses,
        },
        "monitor": monitor,
        "max_epochs": kept.max_epochs,  # with the patience, evaluate tells a cut-short run from a stop
        "patience": kept.patience,
        "weight_decay": kept.weight_decay,  # as trained ('auto': 1 / train rows)
        "selected": result.selected,
        "restarts": [{"restart": i, "seed": seed, "run_id": run, "best_epoch": r.best_epoch,
                      "best_value": r.best_value, "epochs": r.epochs}
                     for i, (seed, run, r) in enumerate(zip(result.seeds, run_ids, result.fits, strict=True))],
        "history": kept.history,
    }


def write_outputs(result: TrainResult, folders: TrainFolders, out: Path, restarts: Path, info: Path,
                  info_json: dict[str, Any]) -> None:
    """Write the bundle to ``out``, every restart's weights to ``restarts`` and ``info_json`` to ``info``."""
    from pipeline.bundle import write_bundle

    check_copied_state(folders.clean)
    with atomic_dir(out) as folder:
        write_bundle(folder, result.spec, result.state, folders.raw, folders.clean, folders.scaled,
                     result.inputs.decision, chunk=result.params.train.eval_chunk)
    # every restart, for evaluate's mean and spread of the test metric
    write_safetensors(restarts, {k: v.detach().cpu().contiguous() for k, v in result.members.items()})
    write_json(info, info_json)


def log_outputs(root: Path, out: Path, restarts: Path, info: Path) -> None:
    """Tag the active run with what it wrote: ``dvc.out.<path>`` for each output, the md5 DVC will lock for it,
    and ``model.weights_md5``, the md5 of the bundle's weights (what ``models reproduce`` compares)."""
    import mlflow

    from pipeline import tracking
    from pipeline.bundle import WEIGHTS

    mlflow.set_tags({**tracking.output_tags(root, [out, restarts, info]),
                     "model.weights_md5": tracking.file_md5(Path(out) / WEIGHTS)})


def print_summary(result: TrainResult, run_id: str) -> None:
    """Print the range test's suggestion, the fit in one line, and with restarts, which model was kept."""
    params, kept, task = result.params, result.kept, result.inputs.task
    monitor = params.train.early_stopping.monitor
    if result.lr_finding is not None:
        print(f"train: lr_find suggests train.lr = {result.lr_finding.suggestion:.3g} "
              f"(training used {params.train.lr:g})")
    last = kept.history[-1]
    metric = "val/acc" if task == "classification" else "val/mae"
    print(
        f"train: {params.model.kind} ({task}) on {kept.device}: {kept.epochs} epochs in {result.seconds:.1f} s "
        f"(at most {kept.max_epochs}, patience {kept.patience}, weight decay {kept.weight_decay:.3g}), best "
        f"epoch {kept.best_epoch} ({monitor} {kept.best_value:.4g}); last train/loss "
        f"{last['train/loss']:.4f} {metric} {last[metric]:.4f}; MLflow run {run_id}"
    )
    if len(result.fits) > 1:
        values = ", ".join(f"{r.best_value:.4g}" for r in result.fits)
        model = f"their average (ensemble of {len(result.fits)})" if result.ensemble else f"restart {result.chosen}"
        print(f"train: {len(result.fits)} restarts, best {monitor} {values}; the model is {model}")
