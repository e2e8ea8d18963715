"""The run lifecycle: a run that always ends (FINISHED, FAILED or KILLED), and cleanup of runs left RUNNING."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
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
