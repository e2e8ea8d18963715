"""Stage evaluate: test-set metrics and plots, logged to train's MLflow run, then the model is registered.

Predictions come from the bundle applied to the raw test rows, the same path ``predict`` takes, and are
checked against the network applied to the scale stage's test matrix (a train/serve skew guard) and against
the logged MLflow model reloaded by MLflow itself, before any version is registered.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import load_params, require_task
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_file, read_npy, read_parquet, read_state, write_json
from pipeline.preprocess import sequence as seq
from pipeline.evaluation.diagnosis import as_json, diagnose, report
from pipeline.evaluation.losing import Run, explain
from pipeline.evaluation.metrics import classification_metrics, flatten_metrics, regression_metrics
from pipeline.evaluation.plots import write_plots
from pipeline.stages.common import stage_args

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable


def same_predictions(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Labels equal exactly; numbers (probabilities, regression values) equal to float32 precision."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype.kind in "fc" and y.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-6, atol=1e-6):
                return False
        elif x.tolist() != y.tolist():
            return False
    return True


def task_metrics(bundle: Any, actual: pd.Series, predictions: pd.DataFrame) -> dict[str, Any]:
    """The task's metrics of ``predictions`` (as the bundle reports them) against ``actual`` labels or values."""
    if bundle.task == "regression":
        return regression_metrics(actual, predictions["prediction"])
    proba = predictions[[f"proba_{c}" for c in bundle.classes]].to_numpy()
    return classification_metrics(actual, predictions["prediction"], bundle.classes, proba)


def split_metrics(bundle: Any, scaled: Path, split: str, target: str) -> dict[str, Any]:
    """Metrics of the network on a split as the scale stage wrote it (train after cleaning and rebalancing).

    The rebalanced train split is scored by the network's own decision, at the balance it was trained under; val
    (and test) by the bundle's, at the natural balance they have. Scored the other way round, a corrected model
    would seem to underfit rows it was fitted to.
    """
    from pipeline.training.data import load_xy

    x, y = load_xy(scaled, split, target, bundle.task, fixed=bundle.fixed_length)
    predictions = bundle.predictions(bundle.logits(x.numpy()), pd.RangeIndex(len(y)), decide=split != "train")
    if bundle.task == "regression":
        actual = pd.Series(bundle.target.inverse(y.numpy()))
    else:
        actual = pd.Series(pd.Series(bundle.classes).to_numpy()[y.numpy()])
    return task_metrics(bundle, actual, predictions)


def baseline_metrics(bundle: Any, params: Any, scaled: Path, x_test: np.ndarray, actual: pd.Series) -> dict[str, Any]:
    """Test metrics of each ``evaluate.baselines`` model fitted on the network's scaled train split."""
    from pipeline.evaluation import baselines
    from pipeline.training.data import load_xy

    if not params.evaluate.baselines:
        return {}
    # sequences padded to the test matrix's steps: a baseline takes rows of one width (test may be the longer)
    length = x_test.shape[1] if bundle.modality == "sequence" else None
    x_train, y_train = (t.numpy() for t in load_xy(scaled, "train", params.data.target, bundle.task, length))
    sequence = bundle.modality == "sequence"
    outputs = baselines.fit_predict(
        tuple(params.evaluate.baselines), bundle.task, baselines.flat_inputs(x_train, sequence), y_train,
        baselines.flat_inputs(x_test, sequence), len(bundle.classes) if bundle.task == "classification" else 0,
        params.seed, params.evaluate.baseline_rows,
    )
    if "dummy" in outputs and bundle.task == "classification" and bundle.decision.natural is not None:
        # the majority class of the train split as drawn: fitted on resampled rows it would see a made-up balance
        prior = np.array([bundle.decision.natural[str(c)] for c in bundle.classes])
        outputs["dummy"] = np.tile(prior, (len(x_test), 1))
    inverse = bundle.target.inverse if bundle.task == "regression" else None
    scores = {}
    for name, output in outputs.items():
        frame = baselines.as_predictions(output, bundle.classes if bundle.task == "classification" else [],
                                         bundle.task, inverse)
        scores[name] = {k: v for k, v in task_metrics(bundle, actual, frame).items() if k != "per_class"}
    return scores


CORRECTION_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss", "ece")


def prior_correction_metrics(bundle: Any, logits: np.ndarray, index: pd.Index, actual: pd.Series,
                             corrected: dict[str, Any]) -> dict[str, Any]:
    """The test metrics before and after the bundle's prior correction, with the two class priors it moves between.

    Calibration (``ece``) is the telling one: a network trained on rebalanced rows overstates the rare classes
    until the correction brings its probabilities back to the class balance the test rows have.
    """
    before = task_metrics(bundle, actual, bundle.predictions(logits, index, decide=False).reset_index(drop=True))
    return {
        "natural_prior": bundle.decision.natural, "trained_prior": bundle.decision.trained,
        "test_before": {k: before[k] for k in CORRECTION_METRICS},
        "test_after": {k: corrected[k] for k in CORRECTION_METRICS},
    }


TRAIN_INFO = {"run_id": str, "monitor": str, "history": list, "restarts": list}  # what evaluate reads of train.json
RESTART_INFO = ("restart", "seed", "run_id", "best_value")


def train_info(state: dict[str, Any]) -> dict[str, Any]:
    """``train.json`` checked for the keys evaluate reads, so a file of another shape is refused up front.

    Raises:
        KeyError, TypeError: On a missing key or a value of the wrong type.
    """
    missing = [key for key in (*TRAIN_INFO, "selected") if key not in state]
    missing += [f"restarts[].{key}" for run in state.get("restarts") or [] for key in RESTART_INFO if key not in run]
    if missing:
        raise KeyError(missing[0])
    for key, kind in TRAIN_INFO.items():
        if not isinstance(state[key], kind):
            raise TypeError(f"{key}: expected {kind.__name__}, got {type(state[key]).__name__}")
    return state


def restart_metrics(bundle: Any, model_dir: Path, restarts_file: Path, info: dict[str, Any], x: np.ndarray,
                    index: pd.Index, actual: pd.Series, primary: str) -> dict[str, Any] | None:
    """Each restart's test ``primary`` metric, with their mean and standard deviation; None for a single restart.

    The spread across initialisations says how much of a difference between two experiments is luck of the draw.
    """
    import torch
    from safetensors.torch import load_file

    from pipeline.nets import build_net, ensemble_spec

    runs = info.get("restarts") or []
    if len(runs) < 2:
        return None
    member = read_state(Path(model_dir) / "net.json",
                        lambda spec: spec["member"] if spec.get("kind") == "ensemble" else spec)
    every = build_net(ensemble_spec(member, len(runs), bundle.task))
    try:
        every.load_state_dict(load_file(restarts_file))
    except Exception as exc:  # safetensors' own error types, or a shape mismatch
        raise PipelineError(f"{restarts_file}: expected the weights of {len(runs)} restarts of net.json's network, "
                            f"got unusable weights ({str(exc).splitlines()[0]})") from None
    every.eval()
    values = []
    with torch.inference_mode():
        for net in every.members:
            predictions = bundle.predictions(net(torch.from_numpy(x)).numpy(), index).reset_index(drop=True)
            values.append(float(task_metrics(bundle, actual, predictions)[primary]))
    scores = np.array(values)
    return {
        "n": len(runs), "selected": "ensemble" if info.get("selected") == "ensemble" else f"restart {info['selected']}",
        f"test_{primary}_mean": float(scores.mean()), f"test_{primary}_std": float(scores.std(ddof=1)),
        "per_restart": {str(run["restart"]): {"seed": run["seed"], f"val_{info['monitor'].split('/')[1]}":
                        run["best_value"], f"test_{primary}": value, "run_id": run["run_id"]}
                        for run, value in zip(runs, values, strict=True)},
    }


def main() -> None:
    """Evaluate ``--model`` on the test split, log to its MLflow run, register, and write ``--reports``."""
    args = stage_args(__doc__.splitlines()[0], "model", "restarts", "info", "split", "scaled", "reports")
    params = load_params(args.params)
    import mlflow

    from pipeline import tracking
    from pipeline.bundle import ModelBundle
    from pipeline.serving import registry
    from pipeline.training.data import load_xy

    root = Path.cwd()
    target = params.data.target
    bundle = ModelBundle.load(args.model)
    info = read_state(args.info, train_info)
    test = read_parquet(args.split / "test.parquet")
    # the raw test input, as predict would get it: rows, long-format rows, or the image array
    if bundle.modality == "image":
        raw, source = read_npy(args.split / "test.npy"), str(args.split / "test.npy")
        actual = test[target]
    else:
        raw, source = test.drop(columns=[target]), str(args.split / "test.parquet")
        actual = test[target] if bundle.modality == "tabular" else seq.series_labels(test, bundle.schema.sequence_id, target)

    # Skew guard: raw input through the bundle must match what the network sees from the scale stage.
    task = bundle.task
    params = require_task(params, task)  # 'auto' values resolved for the model's task
    x_scaled, _ = load_xy(args.scaled, "test", target, task, fixed=bundle.fixed_length)
    from_stages = bundle.logits(x_scaled.numpy())
    x_raw, index = bundle.prepare(raw, source)  # the path predict takes
    from_raw = bundle.logits(x_raw)
    skewed = (from_stages.argmax(axis=1) != from_raw.argmax(axis=1)) if task == "classification" else (
        ~np.isclose(from_stages[:, 0], from_raw[:, 0], rtol=1e-5, atol=1e-5))
    if skewed.any():
        raise PipelineError(
            f"{args.model}: predictions from raw test rows differ from the scaled test matrix on {int(skewed.sum())} "
            "rows; the bundle's preprocessing does not match the stages'"
        )
    predictions = bundle.predictions(from_raw, index)
    actual = actual.loc[index] if bundle.modality == "sequence" else actual

    classes = bundle.classes if task == "classification" else []
    # train and val beside test: a gap between them is over- or underfitting made visible
    metrics = {split: split_metrics(bundle, args.scaled, split, target) for split in ("train", "val")}
    metrics["test"] = task_metrics(bundle, actual.reset_index(drop=True), predictions.reset_index(drop=True))
    flat = flatten_metrics(metrics["test"])
    if not all(math.isfinite(v) for v in flat.values()):
        raise PipelineError(f"test metrics are not finite ({flat}); the model is not registered")
    flat.update({k: v for split in ("train", "val") for k, v in flatten_metrics(metrics[split], f"final/{split}").items()
                 if math.isfinite(v)})
    primary = params.evaluate.primary_metric
    if bundle.decision.corrects:  # the network's own probabilities beside the corrected ones it is judged by
        metrics["prior_correction"] = prior_correction_metrics(bundle, from_raw, index, actual.reset_index(drop=True),
                                                               metrics["test"])
        flat.update({f"uncorrected/test/{k}": float(v) for k, v in metrics["prior_correction"]["test_before"].items()
                     if v is not None and math.isfinite(v)})
    # the scaled test matrix is the raw test input through the same preprocessing (the skew guard above)
    scores = baseline_metrics(bundle, params, args.scaled, x_scaled.numpy(), actual.reset_index(drop=True))
    comparison = None
    if scores:
        from pipeline.evaluation.baselines import best, verdict

        top, value = best(scores, primary)
        comparison = {"metric": primary, "best": top, "best_value": value,
                      "verdict": verdict(metrics["test"][primary], value, primary)}
        metrics["baselines"] = scores
        metrics["versus_baselines"] = comparison
        for name, values in scores.items():
            flat.update({f"baseline/{name}/{k}": float(v) for k, v in values.items()
                         if v is not None and math.isfinite(v)})

    restarts = restart_metrics(bundle, args.model, args.restarts, info, x_raw, index, actual.reset_index(drop=True),
                               primary)
    if restarts is not None:
        metrics["restarts"] = restarts
        flat.update({f"restarts/test/{primary}/mean": restarts[f"test_{primary}_mean"],
                     f"restarts/test/{primary}/std": restarts[f"test_{primary}_std"]})

    recorded = predictions.copy()
    recorded.insert(1 if bundle.modality == "sequence" else 0, "actual", actual.to_numpy())
    with atomic_file(args.reports / "predictions.csv") as tmp:
        recorded.to_csv(tmp, index=False)
    title = f"{params.data.name} {params.model.kind}: test {primary} {metrics['test'][primary]:.3f}"
    proba = predictions[[f"proba_{c}" for c in classes]].to_numpy() if task == "classification" else None
    images = write_plots(args.reports / "plots", task, pd.Series(actual.to_numpy()),
                         predictions["prediction"].reset_index(drop=True), classes, target, title, proba,
                         info.get("history"))

    # what the run's curves and scores say went wrong, each finding with its numbers and the knobs to try
    findings = diagnose(info.get("history") or [], task, metrics, primary, scores or None, params.model.activation)
    if comparison is not None and comparison["verdict"] == "loses":  # and why it lost, with the keys to try
        findings += explain(Run(
            task, primary, metrics["test"], scores, comparison["best"],
            (info.get("epochs", 0), info.get("best_epoch", 0), info.get("max_epochs", 0), info.get("patience", 0)),
            len(load_xy(args.scaled, "train", target, task)[1]), bundle.decision.natural,
            bundle.decision.natural is not None and bundle.decision.natural != bundle.decision.trained,
            bundle.decision.corrects,
        ))
    diagnosis_text = report(findings, f"{params.data.name} {params.model.kind}", info.get("history") or [], metrics,
                            primary)
    with atomic_file(args.reports / "diagnosis.txt") as tmp:
        tmp.write_text(diagnosis_text)

    run_id = info["run_id"]
    tracking.configure(root)
    name = params.registered_model_name
    registered: dict[str, Any] = {"name": name, "version": None, "run_id": run_id, "modality": bundle.modality}
    with tracking.tracked_run(run_id=run_id):
        mlflow.log_metrics(flat)
        for image in images:
            mlflow.log_artifact(str(image), artifact_path="plots")
        mlflow.log_artifact(str(args.reports / "predictions.csv"), artifact_path="evaluation")
        info = registry.log_bundle(bundle, args.model, registry.input_example(bundle, raw))
        reloaded = registry.load(info.model_uri).predict(raw)
        if not same_predictions(reloaded, predictions.reset_index(drop=True)):
            raise PipelineError(f"{info.model_uri}: the reloaded MLflow model predicts differently from the bundle")
        if params.tracking.register_model:
            version = mlflow.register_model(info.model_uri, name)
            registered.update(version=int(version.version), uri=f"models:/{name}/{version.version}")
            mlflow.set_tags({"registered_model": name, "registered_version": version.version})
        if comparison is not None:
            mlflow.set_tag("baseline.verdict", comparison["verdict"])
        if restarts is not None:  # each restart's own run gets its test score, to compare them in the MLflow UI
            client = mlflow.MlflowClient()
            for values in restarts["per_restart"].values():
                client.log_metric(values["run_id"], f"test/{primary}", values[f"test_{primary}"])
        mlflow.set_tag("diagnosis", ", ".join(f.kind for f in findings) or "none")
        mlflow.log_text(diagnosis_text, "evaluation/diagnosis.txt")
        # the run id beside the metrics: `dvc exp show` then links each experiment to its MLflow run
        write_json(args.reports / "metrics.json", {**metrics, "diagnosis": as_json(findings), "mlflow_run_id": run_id})
        write_json(args.reports / "model.json", registered)
        mlflow.log_artifact(str(args.reports / "metrics.json"), artifact_path="evaluation")
        if (root / "dvc.lock").is_file():  # the lock as it stands after train: every input's hash
            mlflow.log_artifact(str(root / "dvc.lock"), artifact_path="config")
    where = f"registered {name} version {registered['version']}" if registered["version"] else "not registered"
    others = ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items()
                       if k not in (primary, "per_class") and v is not None)
    unit = {"tabular": "rows", "image": "images", "sequence": "series"}[bundle.modality]
    print(f"evaluate: test {primary} {metrics['test'][primary]:.4f} ({others}) on {len(predictions)} {unit}; "
          f"{primary} train {metrics['train'][primary]:.4f}, val {metrics['val'][primary]:.4f}; {where}")
    if restarts is not None:
        each = ", ".join(f"{v[f'test_{primary}']:.4f}" for v in restarts["per_restart"].values())
        print(f"evaluate: {restarts['n']} restarts, test {primary} {restarts[f'test_{primary}_mean']:.4f} "
              f"+/- {restarts[f'test_{primary}_std']:.4f} (mean +/- std; each: {each}); the model is "
              f"{restarts['selected']}")
    if "prior_correction" in metrics:
        before, after = metrics["prior_correction"]["test_before"], metrics["prior_correction"]["test_after"]
        print("evaluate: prior correction (clean.prior_correction) on test: " + ", ".join(
            f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in CORRECTION_METRICS if before[k] is not None))
    if comparison is not None:
        table = ", ".join(f"{n} {v[primary]:.4f}" for n, v in scores.items())
        said = {"beats": "beats", "ties": "only ties", "loses": "does NOT beat"}[comparison["verdict"]]
        print(f"evaluate: the network ({metrics['test'][primary]:.4f}) {said} the best baseline, "
              f"{comparison['best']} ({comparison['best_value']:.4f}); baselines' test {primary}: {table}")
    print(diagnosis_text, end="" if diagnosis_text.endswith("\n") else "\n")


if __name__ == "__main__":
    run_main(main, "evaluate")
