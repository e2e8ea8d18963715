"""A search worker: trials drawn from the study one at a time until the study has ``tune.trials`` finished (or
``tune.timeout_minutes`` have passed), a line printed per finished trial, and the study's MLflow run kept up to
date with the best trial, its params and the plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.tuning.objective import Search, objective

if TYPE_CHECKING:
    import optuna

FAILURES_BEFORE_STOP = 3  # a search whose first trials all fail stops with the error instead of failing on


def finished(study: optuna.Study) -> tuple[int, int, int]:
    """(trials counted against ``tune.trials``, running, failed by their own error).

    Counted: complete, pruned, and failed by their own error (a combination the training refuses counts, or a
    space that always fails would never end); a trial killed with its worker is queued again with the same
    params instead, and only that retry counts.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) + failed
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running, failed


@dataclass
class Progress:
    """The line printed after each trial this worker finishes: number, state, params, value, best, left, ETA."""

    search: Search
    trials: int | None
    jobs: int
    started: float = field(default_factory=time.perf_counter)
    count: int = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from pipeline.tuning.space import decode

        self.count += 1
        metric = self.search.metric
        shown = ", ".join(f"{k}={_short(v)}" for k, v in decode(self.search.tune.space, trial.params).items())
        outcome = _outcome(trial, metric)
        best = _best(study)
        line = f"tune: trial {trial.number} {outcome} ({shown})"
        line += f"; best {best.value:.4f} (trial {best.number})" if best is not None else "; no trial complete yet"
        done, _, _ = finished(study)
        if self.trials is not None:
            left = max(self.trials - done, 0)
            per_trial = (time.perf_counter() - self.started) / self.count / self.jobs
            line += f"; {left} left, ETA {_duration(left * per_trial)}"
        print(line, flush=True)


def _outcome(trial: optuna.trial.FrozenTrial, metric: str) -> str:
    """``accuracy 0.9808``, ``pruned at epoch 12`` (or ``fold 2``) or ``failed: <its error>``.

    A pruned trial's ``value`` is Optuna's last intermediate value (the signed monitor), not the objective, so it
    is not shown as one.
    """
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return f"{metric} {trial.value:.4f}"
    if trial.state == TrialState.PRUNED:
        return f"pruned at {trial.user_attrs.get('pruned_at', '?')}"
    return f"failed: {trial.user_attrs.get('error', 'stopped')}"


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial, or ``None``."""
    try:
        return study.best_trial
    except ValueError:  # no trial complete yet
        return None


def _short(value: object) -> str:
    """A value for the progress line: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    """``1m05s``-style."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def work(search: Search, study: optuna.Study, jobs: int = 1) -> None:
    """Run trials in this process until the study has its trials or the time is up.

    Raises:
        PipelineError: When the first :data:`FAILURES_BEFORE_STOP` trials all failed (the last one's error).
    """
    from optuna.trial import TrialState

    tune = search.tune
    deadline = None if tune.timeout_minutes is None else time.monotonic() + 60 * tune.timeout_minutes
    progress = Progress(search, tune.trials, jobs)
    while True:
        done, running, failed = finished(study)
        if tune.trials is not None and done + running >= tune.trials:
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        if failed >= FAILURES_BEFORE_STOP and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            last = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))[-1]
            raise PipelineError(f"tune: the first {failed} trials all failed; the last: {last.user_attrs['error']}")
        study.optimize(lambda trial: objective(search, trial), n_trials=1, catch=(PipelineError,),
                       callbacks=[progress])
        if tune.sampler == "grid" and _grid_done(study):
            return


def _grid_done(study: optuna.Study) -> bool:
    """Whether a grid search has tried every point of its grid."""
    sampler = study.sampler
    return bool(getattr(sampler, "is_exhausted", lambda _: False)(study))
