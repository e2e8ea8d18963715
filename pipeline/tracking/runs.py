"""The run lifecycle: a run that always ends (FINISHED, FAILED or KILLED), cleanup of runs left RUNNING, and
per-epoch metrics written in batches."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipeline.errors import Terminated, sigterm_raises
from pipeline.plumbing import alive


@contextmanager
def tracked_run(**start: object) -> Iterator[mlflow.ActiveRun]:
    """``mlflow.start_run(**start)`` that ends FAILED on an exception and KILLED on Ctrl-C or SIGTERM.

    MLflow alone marks an interrupted run FAILED, and a SIGTERM would end the process with the run left
    RUNNING; here SIGTERM becomes :class:`Terminated` in the main thread so the run is closed as KILLED. The
    run is tagged with this process's ``pid`` and ``host``: a SIGKILL leaves it RUNNING, and
    ``python -m pipeline runs cleanup`` later finds that process gone.
    """
    with sigterm_raises(), mlflow.start_run(**start) as run:
        mlflow.set_tags({"pid": str(os.getpid()), "host": socket.gethostname()})
        try:
            yield run
        except (KeyboardInterrupt, Terminated):
            mlflow.end_run("KILLED")
            raise


def cleanup_runs(client: MlflowClient) -> list[tuple[str, str]]:
    """Mark KILLED every RUNNING run whose process (tags ``pid``, ``host``) is gone from this host.

    Returns:
        (run id, what was done) for each RUNNING run found.
    """
    here = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    done: list[tuple[str, str]] = []
    if not experiments:
        return done
    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'"):
        pid, host = run.data.tags.get("pid"), run.data.tags.get("host")
        if host != here or pid is None:
            done.append((run.info.run_id, f"left RUNNING: started on host {host!r}, this is {here!r}"))
        elif alive(int(pid), named="pipeline"):  # a pid reused by another program does not count
            done.append((run.info.run_id, f"left RUNNING: process {pid} is still running"))
        else:
            client.set_terminated(run.info.run_id, "KILLED")
            done.append((run.info.run_id, f"marked KILLED: process {pid} is gone"))
    return done


# A batch of metrics is written once the time since the last write is at least this many times what that write
# took, so writing costs at most 1 / (1 + FLUSH_SPACING) of the time (2%) whatever the store: measured on the
# SQLite store, one log_metrics call per epoch of 13 figures took 20-30 ms, more than a penguins epoch trains.
FLUSH_SPACING = 49


class MetricsBuffer:
    """Per-step metrics of one MLflow run, kept and written in batches (``MlflowClient.log_batch``).

    Call it as ``buffer(metrics, step)``; it writes what it holds when writing has cost at most 2% of the time
    since (see :data:`FLUSH_SPACING`), and :meth:`flush` writes the rest. Whoever makes one flushes it in a
    ``finally``, so a run that fails or is stopped still ends with every step recorded.

    Args:
        run_id: The run the metrics belong to.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()
        self.pending: list[Metric] = []
        self._next = 0.0  # perf_counter time after which the next write is due (at once: the first step)

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)  # when the step ended, as mlflow.log_metrics would stamp it
        self.pending += [Metric(k, float(v), stamp, int(step)) for k, v in metrics.items()]
        if time.perf_counter() >= self._next:
            self.flush()

    def flush(self) -> None:
        """Write every metric held, in one batch (MLflow splits it as its limits require)."""
        if not self.pending:
            return
        start = time.perf_counter()
        batch, self.pending = self.pending, []
        self.client.log_batch(self.run_id, metrics=batch)
        end = time.perf_counter()
        self._next = end + FLUSH_SPACING * (end - start)
