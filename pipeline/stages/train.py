"""Stage train: fit the network with Lightning on CPU or GPU, seeded and deterministic, tracked in MLflow.

Writes ``--out`` (the model bundle: weights, architecture, fitted preprocessing) and ``--info`` (the MLflow
run id that evaluate continues, and a summary of the fit).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten, load_params, require_task
from pipeline.decision import Decision
from pipeline.errors import run_main
from pipeline.io import atomic_dir, read_state, write_json, write_safetensors
from pipeline.preprocess.impute import Imputer
from pipeline.stages.common import read_schema, stage_args

from pipeline.nets import build_net
from pipeline.training.data import read_encoders
from pipeline.training.fit import check_accelerator, check_lengths, fit, process_rank
from pipeline.training.lr_find import LRFinding
from pipeline.training.restarts import best_restart, fit_restarts, restart_plan, restart_seeds

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable

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
            if path.is_file():  # text files, masked as the diff is: a secret pasted into params.yaml stays here
                mlflow.log_text(tracking.redact(path.read_text(errors="replace")), f"{folder}/{path.name}")
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


def class_weights(weights: dict[str, float] | None, classes: list) -> list[float] | None:
    """Clean's per-class loss weights (``report.json``) in the order of the network's outputs, or ``None``."""
    return None if weights is None else [float(weights[str(c)]) for c in classes]


def main() -> None:
    """Train on ``--scaled`` and write the bundle to ``--out``, every restart's weights to ``--restarts`` and the
    run summary to ``--info``."""
    import mlflow
    import numpy as np
    from pipeline import tracking
    from pipeline.bundle import write_bundle
    from pipeline.nets import ensemble_spec

    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "scaled", "out", "restarts", "info", "checkpoints")
    raw = load_params(args.params)
    check_accelerator(raw.train.accelerator, raw.train.precision)
    check_lengths(raw, args.scaled)
    root = Path.cwd()
    task = read_schema(args.raw).task
    params = require_task(raw, task)  # 'auto' values resolved: MLflow records what the run used
    classes = list(read_encoders(args.scaled).target.classes_) if task == "classification" else []
    n_outputs = len(classes) if task == "classification" else 1
    class_weight = read_state(args.clean / "report.json", lambda report: class_weights(report["class_weight"], classes))
    decision = read_state(args.clean / "report.json", lambda report: Decision.from_report(report, classes))
    offsets = list(decision.offsets) if decision.corrects else None  # validation judges the corrected model
    if process_rank(params.train.devices) != 0:
        # another process of a data-parallel training: it trains its share of every batch in step with the first
        # process, which alone talks to MLflow and writes the outputs
        for settings, folder in restart_plan(params, args.checkpoints):
            fit(settings, args.scaled, n_outputs, None, class_weight, task, checkpoints=folder, val_offsets=offsets)
        return
    client = tracking.configure(root)
    experiment = tracking.experiment_id(client, params.experiment_name, root)
    started = time.perf_counter()
    flat = flatten(params)
    stop = params.train.early_stopping
    # named after what changed in params.yaml as written, 'auto' included
    with tracking.tracked_run(experiment_id=experiment, run_name=tracking.run_name(root, flatten(raw))) as run:
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
                           task, checkpoints=args.checkpoints, val_offsets=offsets)]
            run_ids = [run.info.run_id]
        else:
            results, run_ids = fit_restarts(params, experiment, args, n_outputs, class_weight, task, offsets)
        chosen = best_restart(results, stop.direction)
        result = results[chosen]  # the best single network: its curves are this run's, the one evaluate plots
        ensemble = params.train.ensemble
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
        mlflow.log_metrics({"best_epoch": result.best_epoch, "epochs": result.epochs, "train_seconds": seconds,
                            "max_epochs": result.max_epochs, "patience": result.patience,
                            "weight_decay": result.weight_decay})  # 'auto' as sized
        # the bundle copies the fitted steps as they are: one that cannot be loaded stops train here, naming it
        # (the schema and encoders were read above)
        read_state(args.clean / "imputer.json", Imputer.from_dict)
        with atomic_dir(args.out) as out:
            write_bundle(out, spec, state, args.raw, args.clean, args.scaled, decision)
        # every restart, for evaluate's mean and spread of the test metric
        write_safetensors(args.restarts, {k: v.detach().cpu().contiguous() for k, v in members.items()})
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
            "max_epochs": result.max_epochs,  # with the patience, evaluate tells a cut-short run from a stop
            "patience": result.patience,
            "weight_decay": result.weight_decay,  # as trained ('auto': 1 / train rows)
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
        f"train: {params.model.kind} ({task}) on {result.device}: {result.epochs} epochs in {seconds:.1f} s "
        f"(at most {result.max_epochs}, patience {result.patience}, weight decay {result.weight_decay:.3g}), best "
        f"epoch {result.best_epoch} ({stop.monitor} {result.best_value:.4g}); last train/loss "
        f"{last['train/loss']:.4f} {metric} {last[metric]:.4f}; MLflow run {run.info.run_id}"
    )
    if len(results) > 1:
        values = ", ".join(f"{r.best_value:.4g}" for r in results)
        kept = f"their average (ensemble of {len(results)})" if ensemble else f"restart {chosen}"
        print(f"train: {len(results)} restarts, best {stop.monitor} {values}; the model is {kept}")


if __name__ == "__main__":
    run_main(main, "train")
