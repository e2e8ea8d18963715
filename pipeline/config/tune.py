"""The ``tune`` section of ``params.yaml``: what ``python -m pipeline tune`` searches and how.

No stage reads this section and ``dvc.yaml`` lists none of its keys, so editing it reruns nothing; it is left out
of :func:`pipeline.config.flatten` (what MLflow logs as a run's params and what run names are built from). Which
keys a search may vary, and whether the configuration uses them, is checked against the rest of the file by
:func:`pipeline.tuning.space.check_space`; this module checks the section's own shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from pipeline.config.base import PositiveInt, Section
from pipeline.config.training import ClassificationMetric, Metric
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.config import Params

Sampler = Literal["tpe", "random", "grid"]  # Optuna's samplers, seeded from `seed`
Pruner = Literal["median", "none"]
Objective = Literal["val", "cv"]  # the validation split, or the mean over tune.folds folds of train + val
Direction = Literal["minimize", "maximize"]
MINIMIZED: tuple[str, ...] = ("mae", "rmse")  # the metrics of Metric where lower is better


class Dimension(Section):
    """One searched key: a range ``{low, high[, log][, step]}`` or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0.0)] | None = None
    choices: Annotated[tuple[Any, ...], Field(strict=False)] | None = None

    @property
    def is_range(self) -> bool:
        """True for ``{low, high}``, False for ``{choices}``."""
        return self.choices is None

    def problem(self) -> str | None:
        """What is wrong with the dimension's shape, as the end of a message, or None."""
        ranged = {k: v for k, v in (("low", self.low), ("high", self.high), ("step", self.step)) if v is not None}
        if self.log:
            ranged["log"] = True
        if self.choices is not None:
            if ranged:
                return f"choices with {', '.join(ranged)}: expected either {{low, high}} or {{choices}}, not both"
            return "choices = []: expected at least one choice" if not self.choices else None
        if self.low is None or self.high is None:
            return f"got {ranged or '{}'}: expected {{low, high[, log][, step]}} (a range) or {{choices: [...]}}"
        if self.low > self.high:
            return f"low = {self.low:g}, high = {self.high:g}: expected low <= high"
        if self.log and self.low <= 0:
            return f"log with low = {self.low:g}: expected low > 0 (a log scale starts above 0)"
        if self.log and self.step is not None:
            return f"log with step = {self.step:g}: expected one of them (Optuna steps a linear scale only)"
        return None


class TuneConfig(Section):
    """``python -m pipeline tune`` and ``python -m pipeline cv``: a search over params.yaml keys."""

    trials: PositiveInt | None  # trials to finish (complete or pruned); None: until timeout_minutes
    timeout_minutes: Annotated[float, Field(gt=0.0)] | None  # stop starting new trials after this long
    sampler: Sampler
    pruner: Pruner
    pruner_startup_trials: Annotated[int, Field(ge=0)]  # trials that finish before the pruner judges any
    pruner_warmup_epochs: Annotated[int, Field(ge=0)]  # epochs of each trial before it may be pruned
    pruner_interval_epochs: PositiveInt  # epochs between two looks of the pruner (each costs a database round trip)
    objective: Objective
    metric: Literal["auto", Metric]  # auto: evaluate.primary_metric; always on validation, never test
    folds: Annotated[int, Field(ge=2, le=100)]
    space: dict[str, Dimension]  # dotted params.yaml key -> its dimension

    @model_validator(mode="after")
    def _stops_and_shapes(self) -> TuneConfig:
        if self.trials is None and self.timeout_minutes is None:
            raise ValueError("tune.trials = None with tune.timeout_minutes = None: expected a number of trials, a "
                             "timeout or both (the search has to stop)")
        if not self.space:
            raise ValueError("tune.space = {}: expected at least one dotted params.yaml key to search")
        for key, dimension in self.space.items():
            problem = dimension.problem()
            if problem is not None:
                raise ValueError(f"tune.space.{key}: {problem}")
        return self


def require_tune(params: Params) -> TuneConfig:
    """The ``tune`` section, for the commands that need it.

    Raises:
        PipelineError: When params.yaml has no ``tune`` section.
    """
    if params.tune is None:
        raise PipelineError("params.yaml: tune: missing section (expected trials, timeout_minutes, sampler, pruner, "
                            "pruner_startup_trials, pruner_warmup_epochs, pruner_interval_epochs, objective, metric, folds and space; see the README)")
    return params.tune


def tune_metric(tune: TuneConfig, primary_metric: str, task: str) -> tuple[str, Direction]:
    """The metric a search optimises and its direction, once the task is known.

    Args:
        tune: The section.
        primary_metric: ``evaluate.primary_metric`` resolved for the task (what ``tune.metric: auto`` takes).
        task: ``classification`` or ``regression``.

    Raises:
        PipelineError: When ``tune.metric`` belongs to the other task.
    """
    metric = primary_metric if tune.metric == "auto" else tune.metric
    classes = get_args(ClassificationMetric)
    if (metric in classes) != (task == "classification"):
        allowed = classes if task == "classification" else tuple(m for m in get_args(Metric) if m not in classes)
        raise PipelineError(f"params.yaml: tune.metric = {tune.metric!r} with a {task} task: expected 'auto' or one "
                            f"of {allowed}")
    return metric, "minimize" if metric in MINIMIZED else "maximize"
