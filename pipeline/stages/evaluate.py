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

from pipeline.config import load_params
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_file, read_json, read_parquet, write_json
from pipeline.stages.common import stage_args

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep `dvc repro` output readable


def classification_metrics(y_true: pd.Series, y_pred: pd.Series, classes: list) -> dict[str, Any]:
    """Accuracy, macro F1 and per-class precision / recall / F1 / support (scikit-learn's arithmetic)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
    }


def confusion_png(path: Path, y_true: pd.Series, y_pred: pd.Series, classes: list, title: str) -> None:
    """Draw the confusion matrix with counts in each cell and class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y_true, y_pred, labels=classes)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.0 * len(classes) + 2.5))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="rows")
    names = [str(c) for c in classes]
    ax.set_xticks(range(len(classes)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            dark = counts[i, j] > counts.max() / 2
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if dark else "black")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    """Evaluate ``--model`` on the test split, log to its MLflow run, register, and write ``--reports``."""
    args = stage_args(__doc__.splitlines()[0], "model", "info", "split", "scaled", "reports")
    params = load_params(args.params)
    import mlflow

    from pipeline import tracking
    from pipeline.bundle import ModelBundle
    from pipeline.serving import registry
    from pipeline.training.data import load_xy

    root = Path.cwd()
    target = params.data.target
    bundle = ModelBundle.load(args.model)
    test = read_parquet(args.split / "test.parquet")
    predictions = bundle.predict(test, source=str(args.split / "test.parquet"))

    # Skew guard: raw rows through the bundle must match what the network sees from the scale stage.
    x_scaled, _ = load_xy(args.scaled / "test.parquet", target)
    scaled_pred = bundle.logits(x_scaled.numpy()).argmax(axis=1)
    bundle_pred = predictions[[f"proba_{c}" for c in bundle.classes]].to_numpy().argmax(axis=1)
    if not np.array_equal(scaled_pred, bundle_pred):
        raise PipelineError(
            f"{args.model}: predictions from raw test rows differ from the scaled test matrix on "
            f"{int((scaled_pred != bundle_pred).sum())} rows; the bundle's preprocessing does not match the stages'"
        )

    classes = bundle.classes
    metrics = {"test": classification_metrics(test[target], predictions["prediction"], classes)}
    flat = {f"test/{k}": v for k, v in metrics["test"].items() if k != "per_class"}
    for cls, values in metrics["test"]["per_class"].items():
        flat.update({f"test/{name}/{cls}": float(v) for name, v in values.items() if name != "support"})
    if not all(math.isfinite(v) for v in flat.values()):
        raise PipelineError(f"test metrics are not finite ({flat}); the model is not registered")

    plots = args.reports / "plots"
    recorded = pd.concat([test[[target]].rename(columns={target: "actual"}), predictions], axis=1)
    with atomic_file(args.reports / "predictions.csv") as tmp:
        recorded.to_csv(tmp, index=False)
    with atomic_file(plots / "confusion.csv") as tmp:
        recorded[["actual", "prediction"]].rename(columns={"prediction": "predicted"}).to_csv(tmp, index=False)
    title = f"{params.data.source} {params.model.kind}: test accuracy {metrics['test']['accuracy']:.3f}"
    confusion_png(plots / "confusion.png", test[target], predictions["prediction"], classes, title)

    run_id = read_json(args.info)["run_id"]
    tracking.configure(root)
    name = params.registered_model_name
    registered: dict[str, Any] = {"name": name, "version": None, "run_id": run_id}
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(plots / "confusion.png"), artifact_path="plots")
        mlflow.log_artifact(str(args.reports / "predictions.csv"), artifact_path="evaluation")
        info = registry.log_bundle(args.model, test.head(5))
        reloaded = mlflow.pyfunc.load_model(info.model_uri).predict(test.drop(columns=[target]))
        same = reloaded["prediction"].tolist() == predictions["prediction"].tolist() and np.allclose(
            reloaded.filter(like="proba_").to_numpy(), predictions.filter(like="proba_").to_numpy(), rtol=0, atol=1e-6
        )
        if not same:
            raise PipelineError(f"{info.model_uri}: the reloaded MLflow model predicts differently from the bundle")
        if params.tracking.register_model:
            version = mlflow.register_model(info.model_uri, name)
            registered.update(version=int(version.version), uri=f"models:/{name}/{version.version}")
            mlflow.set_tags({"registered_model": name, "registered_version": version.version})
        write_json(args.reports / "metrics.json", metrics)
        write_json(args.reports / "model.json", registered)
        mlflow.log_artifact(str(args.reports / "metrics.json"), artifact_path="evaluation")
    primary = params.evaluate.primary_metric
    where = f"registered {name} version {registered['version']}" if registered["version"] else "not registered"
    others = ", ".join(f"{k} {metrics['test'][k]:.4f}" for k in ("accuracy", "macro_f1") if k != primary)
    print(f"evaluate: test {primary} {metrics['test'][primary]:.4f} ({others}) on {len(test)} rows; {where}")


if __name__ == "__main__":
    run_main(main, "evaluate")
