"""Stage evaluate: test-set metrics and plots, logged to train's MLflow run, then the model is registered.

Predictions come from the bundle applied to the raw test rows, the same path ``predict`` takes, and are
checked against the network applied to the scale stage's test matrix (a train/serve skew guard) and against
the logged MLflow model reloaded by MLflow itself, before any version is registered.

:func:`evaluate` does the measuring (no tracking, no printing, no files written); ``main`` writes ``reports/``,
logs to MLflow and prints what it returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import Params, load_params, require_task
from pipeline.errors import PipelineError, run_main
from pipeline.evaluation.diagnosis import Finding, diagnose, report
from pipeline.evaluation.inputs import checked_logits, read_test_input
from pipeline.evaluation.losing import Run, explain
from pipeline.evaluation.plots import write_plots
from pipeline.evaluation.result import Evaluation, TrainInfo, report_metrics
from pipeline.evaluation.scores import (
    CORRECTION_METRICS, baseline_metrics, logged_comparisons, logged_split_metrics, prior_correction_metrics,
    restart_metrics, split_metrics, task_metrics, versus_baselines,
)
from pipeline.io import atomic_file, read_state, write_json
from pipeline.modality import MODALITIES
from pipeline.stages.common import stage_args

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from pipeline.bundle import ModelBundle

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable


def evaluate(params: Params, bundle: ModelBundle, train_info: TrainInfo, split_dir: Path, scaled_dir: Path,
             model_dir: Path, restarts_file: Path) -> Evaluation:
    """Measure the bundle on the test split, beside train and val, the baselines and the restarts.

    Reads the split and scale stages' files, ``model_dir/net.json`` and ``restarts_file``; writes nothing, tracks
    nothing, prints nothing.

    Args:
        params: The params resolved for the bundle's task (:func:`pipeline.config.require_task`), as train and
            the registry record them.
        bundle: The model, as ``ModelBundle.load(model_dir)`` gives it.
        train_info: What train recorded of the run (``models/train.json``).
        split_dir: The split stage's folder (the raw test input).
        scaled_dir: The scale stage's folder (every split as the network saw it).
        model_dir: The bundle's folder (named in errors; its ``net.json`` is each restart's architecture).
        restarts_file: Every restart's weights, as train wrote them.

    Raises:
        PipelineError: If the raw and the scaled test input predict differently (train/serve skew), the test
            metrics are not finite, or an input file is unusable.
    """
    from pipeline.training.arrays import load_xy

    target = params.data.target
    test = read_test_input(bundle, split_dir, target)
    x_scaled = load_xy(scaled_dir, "test", target, bundle.task, fixed=bundle.fixed_length)[0].numpy()
    x_raw, logits, index = checked_logits(bundle, model_dir, test, x_scaled)
    predictions = bundle.predictions(logits, index)
    actual = bundle.examples.align(test.actual, index)
    plain = actual.reset_index(drop=True)
    # train and val beside test: a gap between them is over- or underfitting made visible
    splits = {split: split_metrics(bundle, scaled_dir, split, target) for split in ("train", "val")}
    splits["test"] = task_metrics(bundle, plain, predictions.reset_index(drop=True))
    logged = logged_split_metrics(splits)
    primary = params.evaluate.primary_metric
    # the network's own probabilities beside the corrected ones it is judged by
    prior = prior_correction_metrics(bundle, logits, index, plain, splits["test"]) if bundle.decision.corrects else None
    # the scaled test matrix is the raw test input through the same preprocessing (the skew guard above)
    scores = baseline_metrics(bundle, params, scaled_dir, x_scaled, plain)
    comparison = versus_baselines(scores, splits["test"], primary)
    restarts = restart_metrics(bundle, model_dir, restarts_file, train_info, x_raw, index, plain, primary)
    logged.update(logged_comparisons(prior, scores, restarts, primary))
    metrics = report_metrics(splits, prior, scores, comparison, restarts)
    train_rows = len(load_xy(scaled_dir, "train", target, bundle.task)[1])
    findings = run_findings(params, bundle, train_info, metrics, scores, comparison, train_rows)
    text = report(findings, f"{params.data.name} {params.model.kind}", train_info.history, metrics, primary)
    return Evaluation(bundle.task, bundle.modality, bundle.classes if bundle.task == "classification" else [],
                      primary, splits, prior, scores, comparison, restarts, findings, text, predictions, actual,
                      test.raw, logged)


def run_findings(params: Params, bundle: ModelBundle, train_info: TrainInfo, metrics: dict[str, Any],
                 scores: dict[str, dict[str, Any]], comparison: dict[str, Any] | None,
                 train_rows: int) -> list[Finding]:
    """What the run's curves and scores say went wrong, each finding with its numbers and the knobs to try, and
    why the network lost to the best baseline when it did."""
    primary = params.evaluate.primary_metric
    findings = diagnose(train_info.history, bundle.task, metrics, primary, scores or None, params.model.activation)
    if comparison is not None and comparison["verdict"] == "loses":
        natural, trained = bundle.decision.natural, bundle.decision.trained
        findings += explain(Run(
            bundle.task, primary, metrics["test"], scores, comparison["best"],
            (train_info.epochs, train_info.best_epoch, train_info.max_epochs, train_info.patience), train_rows,
            natural, natural is not None and natural != trained, bundle.decision.corrects,
        ))
    return findings


def write_predictions(reports: Path, evaluation: Evaluation) -> Path:
    """``reports/predictions.csv``: each test prediction beside its actual value."""
    path = reports / "predictions.csv"
    with atomic_file(path) as tmp:
        evaluation.table.to_csv(tmp, index=False)
    return path


def write_evaluation_plots(reports: Path, evaluation: Evaluation, params: Params,
                           train_info: TrainInfo) -> list[Path]:
    """``reports/plots``: the task's plots of the test predictions and the learning curves; the images' paths."""
    primary, predictions = evaluation.primary, evaluation.predictions
    title = f"{params.data.name} {params.model.kind}: test {primary} {evaluation.splits['test'][primary]:.3f}"
    proba = (predictions[[f"proba_{c}" for c in evaluation.classes]].to_numpy()
             if evaluation.task == "classification" else None)
    return write_plots(reports / "plots", evaluation.task, pd.Series(evaluation.actual.to_numpy()),
                       predictions["prediction"].reset_index(drop=True), evaluation.classes, params.data.target,
                       title, proba, train_info.history)


def write_diagnosis(reports: Path, evaluation: Evaluation) -> None:
    """``reports/diagnosis.txt``: the findings as text."""
    with atomic_file(reports / "diagnosis.txt") as tmp:
        tmp.write_text(evaluation.diagnosis)


def write_metrics(reports: Path, evaluation: Evaluation, run_id: str, registered: dict[str, Any]) -> None:
    """``reports/metrics.json`` and ``reports/model.json`` (the registered name and version)."""
    # the run id beside the metrics: `dvc exp show` then links each experiment to its MLflow run
    write_json(reports / "metrics.json", evaluation.metrics_json(run_id))
    write_json(reports / "model.json", registered)


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


def log_checked_model(bundle: ModelBundle, model_dir: Path, evaluation: Evaluation) -> ModelInfo:
    """Log the bundle as the run's MLflow model, reload it through MLflow and check it predicts as the bundle.

    Raises:
        PipelineError: If the reloaded model's predictions differ from the bundle's.
    """
    from pipeline.serving import registry

    model_info = registry.log_bundle(bundle, model_dir, registry.input_example(bundle, evaluation.test_input))
    reloaded = registry.load(model_info.model_uri).predict(evaluation.test_input)
    if not same_predictions(reloaded, evaluation.predictions.reset_index(drop=True)):
        raise PipelineError(f"{model_info.model_uri}: the reloaded MLflow model predicts differently from the bundle")
    return model_info


def reusable_version(client: Any, name: str, run_id: str, weights_md5: str) -> str | None:
    """The latest version of ``name`` when it came from run ``run_id`` and holds weights of md5 ``weights_md5``
    (its ``weights_md5`` tag), else None: an evaluate-only rerun then has nothing new to register."""
    import mlflow

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:  # no such model yet
        return None
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    same = latest.run_id == run_id and (latest.tags or {}).get("weights_md5") == weights_md5
    return str(latest.version) if same else None


def register(params: Params, model_info: ModelInfo, registered: dict[str, Any], weights_md5: str) -> None:
    """Register the logged model as a new version of ``tracking.model_name`` (when ``tracking.register_model``),
    recording the version in ``registered`` and on the run.

    An evaluate-only rerun (evaluate's params or code changed, the model did not) continues the same run with
    the same weights: when the latest version is that run's, with byte-identical weights, it is reused
    (``registered["reused"]``) rather than registered again as a copy.
    """
    import mlflow

    if not params.tracking.register_model:
        return
    name, client = params.registered_model_name, mlflow.MlflowClient()
    run_id = registered["run_id"]
    number = reusable_version(client, name, run_id, weights_md5)
    if number is None:
        origin = {k: v for k, v in client.get_run(run_id).data.tags.items() if k in ("tune.study", "tune.trial")}
        number = mlflow.register_model(model_info.model_uri, name, tags={"weights_md5": weights_md5, **origin}).version
    else:
        registered["reused"] = True
    registered.update(version=int(number), uri=f"models:/{name}/{number}")
    mlflow.set_tags({"registered_model": name, "registered_version": str(number)})


def track(root: Path, params: Params, bundle: ModelBundle, model_dir: Path, reports: Path, evaluation: Evaluation,
          images: list[Path], run_id: str) -> dict[str, Any]:
    """Continue train's MLflow run: log the metrics, plots and predictions, log and check the model, register it,
    tag the verdicts, then write and log ``metrics.json`` and ``model.json``; returns ``model.json``'s content."""
    import mlflow

    from pipeline import tracking
    from pipeline.bundle import WEIGHTS

    tracking.configure(root)
    registered: dict[str, Any] = {"name": params.registered_model_name, "version": None, "run_id": run_id,
                                  "modality": bundle.modality}
    with tracking.tracked_run(run_id=run_id):
        mlflow.log_metrics(evaluation.logged)
        for image in images:
            mlflow.log_artifact(str(image), artifact_path="plots")
        mlflow.log_artifact(str(reports / "predictions.csv"), artifact_path="evaluation")
        weights_md5 = tracking.file_md5(model_dir / WEIGHTS)  # what a rerun of evaluate compares
        register(params, log_checked_model(bundle, model_dir, evaluation), registered, weights_md5)
        log_verdicts(evaluation)
        mlflow.log_text(evaluation.diagnosis, "evaluation/diagnosis.txt")
        write_metrics(reports, evaluation, run_id, registered)
        mlflow.log_artifact(str(reports / "metrics.json"), artifact_path="evaluation")
        if (root / "dvc.lock").is_file():  # the lock as it stands after train: every input's hash
            mlflow.log_artifact(str(root / "dvc.lock"), artifact_path="config")
    return registered


def log_verdicts(evaluation: Evaluation) -> None:
    """Tag the run with the baseline verdict and the findings; log each restart's test score to its own run."""
    import mlflow

    if evaluation.versus_baselines is not None:
        mlflow.set_tag("baseline.verdict", evaluation.versus_baselines["verdict"])
    if evaluation.restarts is not None:  # each restart's own run gets its test score, to compare them in the MLflow UI
        client = mlflow.MlflowClient()
        primary = evaluation.primary
        for values in evaluation.restarts["per_restart"].values():
            client.log_metric(values["run_id"], f"test/{primary}", values[f"test_{primary}"])
    mlflow.set_tag("diagnosis", ", ".join(f.kind for f in evaluation.findings) or "none")


def print_summary(evaluation: Evaluation, registered: dict[str, Any]) -> None:
    """The console lines: the test scores, the restarts' spread, the prior correction, the baselines, the diagnosis."""
    primary, test = evaluation.primary, evaluation.splits["test"]
    where = (f"registered {registered['name']} version {registered['version']}" if registered["version"]
             else "not registered")
    if registered.get("reused"):
        where = (f"kept {registered['name']} version {registered['version']} (the same run's identical weights; "
                 f"nothing new to register)")
    others = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k not in (primary, "per_class") and v is not None)
    unit = MODALITIES[evaluation.modality].unit
    print(f"evaluate: test {primary} {test[primary]:.4f} ({others}) on {len(evaluation.predictions)} {unit}; "
          f"{primary} train {evaluation.splits['train'][primary]:.4f}, val {evaluation.splits['val'][primary]:.4f}; "
          f"{where}")
    if (restarts := evaluation.restarts) is not None:
        each = ", ".join(f"{v[f'test_{primary}']:.4f}" for v in restarts["per_restart"].values())
        print(f"evaluate: {restarts['n']} restarts, test {primary} {restarts[f'test_{primary}_mean']:.4f} "
              f"+/- {restarts[f'test_{primary}_std']:.4f} (mean +/- std; each: {each}); the model is "
              f"{restarts['selected']}")
    if (prior := evaluation.prior_correction) is not None:
        before, after = prior["test_before"], prior["test_after"]
        print("evaluate: prior correction (clean.prior_correction) on test: " + ", ".join(
            f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in CORRECTION_METRICS if before[k] is not None))
    if (comparison := evaluation.versus_baselines) is not None:
        table = ", ".join(f"{n} {v[primary]:.4f}" for n, v in evaluation.baselines.items())
        said = {"beats": "beats", "ties": "only ties", "loses": "does NOT beat"}[comparison["verdict"]]
        print(f"evaluate: the network ({test[primary]:.4f}) {said} the best baseline, "
              f"{comparison['best']} ({comparison['best_value']:.4f}); baselines' test {primary}: {table}")
    text = evaluation.diagnosis
    print(text, end="" if text.endswith("\n") else "\n")


def main() -> None:
    """Evaluate ``--model`` on the test split, log to its MLflow run, register, and write ``--reports``."""
    args = stage_args(__doc__.splitlines()[0], "model", "restarts", "info", "split", "scaled", "reports")
    params = load_params(args.params)
    from pipeline.bundle import ModelBundle

    bundle = ModelBundle.load(args.model)
    train_info = read_state(args.info, TrainInfo.from_dict)
    params = require_task(params, bundle.task)  # 'auto' values resolved once, for the model's task
    evaluation = evaluate(params, bundle, train_info, args.split, args.scaled, args.model, args.restarts)
    write_predictions(args.reports, evaluation)
    images = write_evaluation_plots(args.reports, evaluation, params, train_info)
    write_diagnosis(args.reports, evaluation)
    registered = track(Path.cwd(), params, bundle, args.model, args.reports, evaluation, images, train_info.run_id)
    print_summary(evaluation, registered)


if __name__ == "__main__":
    run_main(main, "evaluate")
