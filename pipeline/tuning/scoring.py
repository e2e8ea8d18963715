"""One configuration trained in-process and scored on its validation split: what a search trial and a
cross-validation fold both do.

The train stage's own :func:`~pipeline.stages.train.train` fits the network(s); the model is written as the stage
writes its bundle and scored with evaluate's own metrics, on the validation split only (test is never read).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params

if TYPE_CHECKING:  # torch and Lightning load with the train stage, when a trial first trains
    from pipeline.stages.train import TrainResult
    from pipeline.training.fit import FitResult
    from pipeline.training.restarts import Sink
    from pipeline.tuning.prepare import Prepared

@dataclass(frozen=True)
class Scored:
    """A trained configuration and its validation metrics."""

    result: TrainResult
    metrics: dict[str, float]  # evaluate's metrics on the val split, flat: ``val/accuracy``, ``val/f1/Adelie`` ...

    def value(self, metric: str) -> float:
        """The validation value of ``metric`` (``accuracy``, ``rmse``, ...)."""
        return self.metrics[f"val/{metric}"]


# Called after each epoch of the first network with that epoch's figures and number; may raise (Optuna's
# TrialPruned) to stop the training.
EpochReport = Callable[[dict[str, float], int], None]


class EpochRunner:
    """A :data:`~pipeline.training.restarts.RestartRunner` for in-process trainings: each restart's epochs go to
    one MLflow run in batches (restarts after the first under ``restart<i>/``), and the first restart's to
    ``report``.

    Args:
        run_id: The MLflow run the curves belong to, or ``None`` to log nothing.
        report: Called with each epoch of the first restart (the pruner's intermediate values), or ``None``.
    """

    def __init__(self, run_id: str | None, report: EpochReport | None = None) -> None:
        self.run_id, self.report = run_id, report

    def __call__(self, index: int, settings: Params, fit_one: Callable[[Sink | None], FitResult]) -> FitResult:
        from pipeline import tracking

        buffer = tracking.MetricsBuffer(self.run_id) if self.run_id is not None else None
        prefix = "" if index == 0 else f"restart{index}/"

        def sink(metrics: dict[str, float], epoch: int) -> None:
            if buffer is not None:
                buffer({f"{prefix}{k}": v for k, v in metrics.items()}, epoch)
            if index == 0 and self.report is not None:
                self.report(metrics, epoch)

        try:
            return fit_one(sink)
        finally:
            if buffer is not None:
                buffer.flush()  # a pruned or failed training keeps every epoch it finished


def fit_and_score(params: Params, prepared: Prepared, work: Path, runner: Callable[..., Any] | None = None,
                  keep: bool = False) -> Scored:
    """Train ``params`` on ``prepared`` data as the train stage does and score the model on validation.

    Args:
        params: The validated params of this configuration.
        prepared: The data stages' folders for its data configuration.
        work: A folder of its own for the checkpoints and the model bundle (removed afterwards unless ``keep``).
        runner: Runs each restart's fit (an :class:`EpochRunner`); ``None`` tracks nothing.
        keep: Leave ``work`` in place (the bundle in ``work/model``).

    Returns:
        The training's result and evaluate's validation metrics of its model.

    Raises:
        PipelineError: From the training, as the train stage raises it.
    """
    from pipeline.stages.train import TrainFolders, train
    from pipeline.training.restarts import untracked

    folders = TrainFolders(prepared.raw, prepared.clean, prepared.scaled, work / "checkpoints")
    try:
        result = train(params, folders, runner or untracked)
        return Scored(result, validation_metrics(result, prepared, work / "model"))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def validation_metrics(result: TrainResult, prepared: Prepared, bundle_dir: Path) -> dict[str, float]:
    """Evaluate's metrics of ``result``'s model on the val split, as ``val/<metric>``.

    The model goes through the bundle the train stage writes and evaluate loads, so the figures are the ones
    evaluate reports for val when this configuration runs through the pipeline.
    """
    from pipeline.bundle import ModelBundle, write_bundle
    from pipeline.evaluation.metrics import flatten_metrics
    from pipeline.evaluation.scores import split_metrics

    bundle_dir.mkdir(parents=True, exist_ok=True)
    write_bundle(bundle_dir, result.spec, result.state, prepared.raw, prepared.clean, prepared.scaled,
                 result.inputs.decision, chunk=result.params.train.eval_chunk)
    bundle = ModelBundle.load(bundle_dir)
    metrics = split_metrics(bundle, prepared.scaled, "val", result.params.data.target)
    return flatten_metrics(metrics, "val")
