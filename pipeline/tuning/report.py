"""What a search reports: the study's MLflow run (the best trial, its params and value, the plots), the printed
result, and the ``dvc exp run -S ...`` command that adopts the best params through the pipeline."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.tuning.objective import Search

if TYPE_CHECKING:
    import optuna

STUDY_ENV = "PIPELINE_TUNE_STUDY"  # set by `tune --apply` for the train stage, which tags its run with them
TRIAL_ENV = "PIPELINE_TUNE_TRIAL"


def best_values(search: Search, study: optuna.Study) -> tuple[optuna.trial.FrozenTrial, dict[str, Any]]:
    """The best complete trial and its params by dotted key.

    Raises:
        PipelineError: When no trial completed.
    """
    from pipeline.tuning.space import decode

    try:
        best = study.best_trial
    except ValueError:
        raise PipelineError(f"tune: study {search.study!r} has no complete trial yet (run tune again)") from None
    return best, decode(search.tune.space, best.params)


def adopt_command(values: dict[str, Any]) -> list[str]:
    """``dvc exp run -S key=value ...``: the best params through the normal pipeline."""
    from pipeline.tuning.space import set_args

    return ["dvc", "exp", "run", *set_args(values)]


def update_parent(search: Search, study: optuna.Study) -> None:
    """Put the best trial on the study's run (tags ``best.<key>``, metric ``best/<metric>``) and its plots."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        best, values = best_values(search, study)
    except PipelineError:
        return
    tags = {f"best.{k}": str(v) for k, v in values.items()}
    client.set_tag(search.parent_run_id, "tune.best_trial", str(best.number))
    for key, value in tags.items():
        client.set_tag(search.parent_run_id, key, value)
    client.log_metric(search.parent_run_id, f"best/{search.metric}", float(best.value), step=len(study.trials))
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifacts(search.parent_run_id, str(write_plots(search, study, Path(tmp))), "plots")


def write_plots(search: Search, study: optuna.Study, folder: Path) -> Path:
    """The optimisation history, the parameter importances and the objective against each key, as PNGs."""
    from optuna.trial import TrialState

    from pipeline.tuning import plots
    from pipeline.tuning.space import decode

    trials = study.get_trials(deepcopy=False)
    title = f"{search.study}: {search.metric} on validation"
    plots.history_png(folder / "history.png", [t.number for t in trials],
                      [t.value if t.state == TrialState.COMPLETE else None for t in trials],
                      search.direction, search.metric, title)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = list(search.tune.space)
    log_keys = {k for k, v in search.tune.space.items() if getattr(v, "log", False)}
    plots.slices_png(folder / "slices.png", [decode(search.tune.space, t.params) for t in complete],
                     [float(t.value) for t in complete], keys, search.metric, title, log_keys)
    plots.importances_png(folder / "importances.png", importances(study), f"{search.study}: parameter importance")
    return folder


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched keys (empty before two complete trials that differ)."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # a warning when every trial scores alike: the plot shows equal bars
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # too few complete trials, or all with the same params
        return {}


def print_result(search: Search, study: optuna.Study) -> list[str]:
    """Print the best trial and the command that adopts it; the command, for ``--apply``."""
    best, values = best_values(search, study)
    command = adopt_command(values)
    states = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    judged = "cross-validation" if search.tune.objective == "cv" else "validation"
    print(f"tune: study {search.study}: {counts}; best trial {best.number}: {search.metric} {best.value:.4f} on "
          f"{judged} (MLflow run {best.user_attrs.get('mlflow_run_id', '-')}, study run {search.parent_run_id})")
    for key, value in values.items():
        print(f"tune:   {key} = {value!r}")
    print(f"tune: adopt it through the pipeline: {shlex.join(command)}")
    return command
