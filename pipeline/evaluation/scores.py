"""The scores evaluate reports, each a pure function of the bundle and the data stages' files (read, never written).

The network on each split, the simple baselines on the test split, the test metrics before and after the prior
correction, each restart's test score, and the flat names they are logged to MLflow under.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.evaluation.metrics import classification_metrics, flatten_metrics, regression_metrics
from pipeline.evaluation.result import TrainInfo
from pipeline.io import read_state

if TYPE_CHECKING:  # the bundle imports torch: loaded where a bundle is, not to read a type
    from pipeline.bundle import ModelBundle
    from pipeline.config import Params

CORRECTION_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss", "ece")


def task_metrics(bundle: ModelBundle, actual: pd.Series, predictions: pd.DataFrame) -> dict[str, Any]:
    """The task's metrics of ``predictions`` (as the bundle reports them) against ``actual`` labels or values."""
    if bundle.task == "regression":
        return regression_metrics(actual, predictions["prediction"])
    proba = predictions[[f"proba_{c}" for c in bundle.classes]].to_numpy()
    return classification_metrics(actual, predictions["prediction"], bundle.classes, proba)


def split_metrics(bundle: ModelBundle, scaled: Path, split: str, target: str) -> dict[str, Any]:
    """Metrics of the network on a split as the scale stage wrote it (train after cleaning and rebalancing).

    The rebalanced train split is scored by the network's own decision, at the balance it was trained under; val
    (and test) by the bundle's, at the natural balance they have. Scored the other way round, a corrected model
    would seem to underfit rows it was fitted to.
    """
    from pipeline.training.arrays import load_xy

    x, y = load_xy(scaled, split, target, bundle.task, fixed=bundle.fixed_length)
    predictions = bundle.predictions(bundle.logits(x.numpy()), pd.RangeIndex(len(y)), decide=split != "train")
    if bundle.task == "regression":
        actual = pd.Series(bundle.target.inverse(y.numpy()))
    else:
        actual = pd.Series(pd.Series(bundle.classes).to_numpy()[y.numpy()])
    return task_metrics(bundle, actual, predictions)


def baseline_metrics(bundle: ModelBundle, params: Params, scaled: Path, x_test: np.ndarray,
                     actual: pd.Series) -> dict[str, dict[str, Any]]:
    """Test metrics of each ``evaluate.baselines`` model fitted on the network's scaled train split."""
    from pipeline.evaluation import baselines
    from pipeline.training.arrays import load_xy

    if not params.evaluate.baselines:
        return {}
    sequence = bundle.examples.by_series
    # sequences padded to the test matrix's steps: a baseline takes rows of one width (test may be the longer)
    length = x_test.shape[1] if sequence else None
    x_train, y_train = (t.numpy() for t in load_xy(scaled, "train", params.data.target, bundle.task, length))
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


def versus_baselines(scores: dict[str, dict[str, Any]], network: dict[str, Any],
                     primary: str) -> dict[str, Any] | None:
    """The best baseline on ``primary`` and whether the network beats, ties or loses to it; None without baselines."""
    from pipeline.evaluation.baselines import best, verdict

    if not scores:
        return None
    top, value = best(scores, primary)
    return {"metric": primary, "best": top, "best_value": value, "verdict": verdict(network[primary], value, primary)}


def prior_correction_metrics(bundle: ModelBundle, logits: np.ndarray, index: pd.Index, actual: pd.Series,
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


def restart_scores(bundle: ModelBundle, model_dir: Path, restarts_file: Path, runs: int, x: np.ndarray,
                   index: pd.Index, actual: pd.Series, primary: str) -> list[float]:
    """Each of ``runs`` restarts' test ``primary`` metric, from their weights in ``restarts_file``.

    Raises:
        PipelineError: If the file does not hold ``runs`` networks of the bundle's architecture.
    """
    from safetensors.torch import load_file

    from pipeline.nets import build_net, ensemble_spec

    member = read_state(Path(model_dir) / "net.json",
                        lambda spec: spec["member"] if spec.get("kind") == "ensemble" else spec)
    every = build_net(ensemble_spec(member, runs, bundle.task))
    try:
        every.load_state_dict(load_file(restarts_file))
    except Exception as exc:  # safetensors' own error types, or a shape mismatch
        raise PipelineError(f"{restarts_file}: expected the weights of {runs} restarts of net.json's network, "
                            f"got unusable weights ({str(exc).splitlines()[0]})") from None
    every.eval()
    values = []
    for net in every.members:  # in the bundle's chunks, as its own network runs
        predictions = bundle.predictions(bundle.outputs(net, x), index).reset_index(drop=True)
        values.append(float(task_metrics(bundle, actual, predictions)[primary]))
    return values


def restart_metrics(bundle: ModelBundle, model_dir: Path, restarts_file: Path, train_info: TrainInfo,
                    x: np.ndarray, index: pd.Index, actual: pd.Series, primary: str) -> dict[str, Any] | None:
    """Each restart's test ``primary`` metric, with their mean and standard deviation; None for a single restart.

    The spread across initialisations says how much of a difference between two experiments is luck of the draw.
    """
    runs = train_info.restarts
    if len(runs) < 2:
        return None
    values = restart_scores(bundle, model_dir, restarts_file, len(runs), x, index, actual, primary)
    scores = np.array(values)
    monitored = f"val_{train_info.monitor.split('/')[1]}"
    return {
        "n": len(runs),
        "selected": "ensemble" if train_info.selected == "ensemble" else f"restart {train_info.selected}",
        f"test_{primary}_mean": float(scores.mean()), f"test_{primary}_std": float(scores.std(ddof=1)),
        "per_restart": {str(run["restart"]): {"seed": run["seed"], monitored: run["best_value"],
                                              f"test_{primary}": value, "run_id": run["run_id"]}
                        for run, value in zip(runs, values, strict=True)},
    }


def logged_split_metrics(splits: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The flat names MLflow logs the splits' metrics under: test's as ``test/...``, train's and val's as
    ``final/<split>/...`` (the non-finite ones left out).

    Raises:
        PipelineError: If a test metric is not finite; no model is registered on such scores.
    """
    flat = flatten_metrics(splits["test"])
    if not all(math.isfinite(v) for v in flat.values()):
        raise PipelineError(f"test metrics are not finite ({flat}); the model is not registered")
    flat.update({k: v for split in ("train", "val") for k, v in flatten_metrics(splits[split], f"final/{split}").items()
                 if math.isfinite(v)})
    return flat


def logged_comparisons(prior_correction: dict[str, Any] | None, baselines: dict[str, dict[str, Any]],
                       restarts: dict[str, Any] | None, primary: str) -> dict[str, float]:
    """The flat names MLflow logs the comparisons under: ``uncorrected/test/...``, ``baseline/<name>/...`` and
    ``restarts/test/<primary>/{mean,std}`` (missing and non-finite values left out)."""
    flat: dict[str, float] = {}
    if prior_correction is not None:
        flat.update({f"uncorrected/test/{k}": float(v) for k, v in prior_correction["test_before"].items()
                     if v is not None and math.isfinite(v)})
    for name, values in baselines.items():
        flat.update({f"baseline/{name}/{k}": float(v) for k, v in values.items() if v is not None and math.isfinite(v)})
    if restarts is not None:
        flat.update({f"restarts/test/{primary}/mean": restarts[f"test_{primary}_mean"],
                     f"restarts/test/{primary}/std": restarts[f"test_{primary}_std"]})
    return flat
