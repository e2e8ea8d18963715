"""The command line's grammar: every command, action and option, with its help and default.

Each command's parser names its handler with ``set_defaults(handler=...)``; :mod:`pipeline.__main__` holds the
handlers and runs the one named. So building the parser (for ``--help``, or in a test) imports neither the
handlers nor MLflow or torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_PARAMS

DESCRIPTION = ("Search hyperparameters, cross-validate, predict with a registered model, manage versions, summarise the "
               "last run, open the MLflow UI.")
EXAMPLES = (
    "tune [--jobs 2] [--apply]",
    "cv [--folds 5]",
    "predict --model champion --input rows.csv --output preds.csv",
    "models list",
    "models pin 3 --alias champion",
    "models show champion",
    "models reproduce 3",
    "runs cleanup",
    "summary",
    "ui",
    "preset digits [--run]",
    "server start|stop|status",
    "worker start|stop|status",
)


def _command(group: Any, name: str, text: str, handler: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name``: ``text`` is its line in the parent's list and, capitalised, its own description;
    ``handler`` names the function in :data:`pipeline.__main__.COMMANDS` that runs it (none for a group)."""
    command = group.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.", **kwargs)
    if handler is not None:
        command.set_defaults(handler=handler)
    return command


def _shared_options() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Parent parsers: ``--params`` for the commands that read params, and it with ``--name`` for the registry's."""
    params = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the command it is set, absent it leaves the top-level --params (or its default) alone
    params.add_argument("--params", type=Path, default=argparse.SUPPRESS,
                        help=f"params file (default: {DEFAULT_PARAMS}; also accepted before the command)")
    registry = argparse.ArgumentParser(add_help=False, parents=[params])
    registry.add_argument("--name", help="registered model name (default: the params file's tracking.model_name, "
                                         "which auto makes <data.source>-<model.kind>; given, the params file is not read)")
    return params, registry


def _registry_commands(commands: Any, registry: argparse.ArgumentParser) -> None:
    """``predict`` and ``models list|pin|show|reproduce``: the registered model versions."""
    predict = _command(commands, "predict", "predict raw rows with a registered model version", "predict",
                       parents=[registry])
    predict.add_argument("--model", required=True, help="a version number, an alias, or a models:/ URI")
    predict.add_argument("--input", type=Path, required=True,
                         help="raw rows (.csv or .parquet; sequences in long format) or images (.npz with x)")
    predict.add_argument("--output", type=Path, required=True, help="predictions CSV to write")

    models = _command(commands, "models", "list, inspect, pin or rebuild registered model versions").add_subparsers(
        dest="action", required=True, title="actions", metavar="ACTION", help="what to do with the versions")
    _command(models, "list", "list versions with aliases, key test metric and commit", "models_list",
             parents=[registry])
    pin = _command(models, "pin", "point an alias at a version", "models_pin", parents=[registry])
    pin.add_argument("version", help="a version number, e.g. 3")
    pin.add_argument("--alias", default="champion", help="the alias to set (default: %(default)s)")
    show = _command(models, "show", "print a version's run, metrics, lineage, environment and params",
                    "models_show", parents=[registry])
    show.add_argument("version", help="a version number or an alias")
    again = _command(models, "reproduce", "rebuild a version from its commit and params and compare the weights",
                     "models_reproduce", parents=[registry])
    again.add_argument("version", help="a version number or an alias")
    again.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")


def _local_commands(commands: Any, params: argparse.ArgumentParser) -> None:
    """``runs cleanup``, ``summary``, ``ui`` and ``preset``: this project's runs, reports and experiments."""
    runs = _command(commands, "runs", "housekeeping of MLflow runs").add_subparsers(
        dest="action", required=True, title="actions", metavar="ACTION", help="what to do with the runs")
    _command(runs, "cleanup", "mark KILLED the runs left RUNNING by a process that no longer exists", "runs_cleanup")

    _command(commands, "summary", "print the last run's test metrics and registered version "
                                  "(from reports/metrics.json and reports/model.json)", "summary")

    ui = _command(commands, "ui", "serve the MLflow UI for this project's store", "ui")
    ui.add_argument("--host", default="127.0.0.1", help="address the UI binds (default: %(default)s: this machine)")
    ui.add_argument("--port", type=int, default=5000, help="the UI's port (default: %(default)s)")

    presets = _command(
        commands, "preset", "print (or --run) the `dvc exp run` of a measured preset", "preset", parents=[params],
        epilog="Arguments after a lone -- go to `dvc exp run` as they are, e.g. preset digits --run -- --name d1",
    )
    presets.add_argument("name", help="a preset in the presets file: penguins, diabetes, digits, gunpoint")
    presets.add_argument("--run", action="store_true", help="run the experiment instead of printing the command")
    presets.add_argument("--presets", type=Path, default=Path("presets.yaml"),
                         help="presets file (default: %(default)s)")


def _search_commands(commands: Any, params: argparse.ArgumentParser) -> None:
    """``tune`` and ``cv``: a hyperparameter search over params.yaml's ``tune.space``, and k-fold cross-validation."""
    tune = _command(
        commands, "tune", "search params.yaml's tune.space with Optuna, each trial a child MLflow run, chosen on "
                          "validation", "tune", parents=[params],
        epilog="The study lives in .tune/study.db, or the team server's PostgreSQL when `server start` runs here; "
               "rerun the same command to resume a stopped search. It prints the `dvc exp run -S ...` that adopts "
               "the best params.",
    )
    tune.add_argument("--jobs", type=int, default=1,
                      help="worker processes on this machine, all on one study (default: %(default)s)")
    tune.add_argument("--study", help="the study's name (default: the experiment and a digest of params.yaml, "
                                      "tune.trials and tune.timeout_minutes left out)")
    tune.add_argument("--storage", help="the study database's URL, e.g. postgresql+psycopg2://user@host/optuna, "
                                        "to share one study across machines (default: $PIPELINE_TUNE_STORAGE, "
                                        "else the team server's, else sqlite:///.tune/study.db)")
    tune.add_argument("--apply", action="store_true",
                      help="then run the best params through the pipeline (dvc exp run --force -S ...): evaluated "
                           "on test once, registered, tagged with the study and trial")
    tune.add_argument("--no-repro", action="store_true",
                      help="use data/ as it is instead of running `dvc repro scale` first (the workers --jobs "
                           "starts pass it)")
    cv = _command(commands, "cv", "cross-validate params.yaml's configuration on k folds of train+val (test "
                                  "untouched), each fold a child MLflow run", "cv", parents=[params])
    cv.add_argument("--folds", type=int, help="the number of folds (default: params.yaml's tune.folds)")


def _server_command(commands: Any) -> None:
    """``server start|stop|status``: a team MLflow tracking server."""
    from pipeline import server  # light: no MLflow, no torch

    tracking_server = _command(
        commands, "server", "start, stop or check a team MLflow tracking server (PostgreSQL backend store, "
                            "artifacts served over HTTP)", "server",
        epilog="Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (the --port given). status exits 3 "
               "when the server is not (fully) running.",
    )
    option = tracking_server.add_argument
    option("action", choices=["start", "stop", "status"], help="start PostgreSQL and MLflow (nothing if already "
           "running), stop both, or print their state (exit 3 when not fully running)")
    option("--dir", type=Path, default=server.DEFAULT_DIR,
           help="the server's folder: database, artifacts, logs, state (default: %(default)s)")
    option("--host", default=server.DEFAULT_HOST,
           help="address MLflow binds (default: %(default)s; PostgreSQL always binds 127.0.0.1)")
    option("--port", type=int, default=server.DEFAULT_PORT, help="MLflow's port (default: %(default)s)")
    option("--pg-port", type=int, default=server.DEFAULT_PG_PORT, help="PostgreSQL's port (default: %(default)s)")
    option("--workers", type=int, default=server.DEFAULT_WORKERS,
           help="MLflow's uvicorn workers (default: %(default)s)")
    option("--auth", action="store_true", help="MLflow's basic auth (mlflow server --app-name basic-auth; "
                                               "default: off)")
    option("--pg-user", help=f"run PostgreSQL as this user when started by root (default: {server.DEFAULT_PG_USER}, "
                             "created if absent)")
    option("--pg-bin", type=Path,
           help="folder with initdb and pg_ctl (default: PATH, then /usr/lib/postgresql/*/bin)")
    option("--timeout", type=float, default=server.DEFAULT_TIMEOUT_S,
           help="seconds to wait for each part to come up (default: %(default)s)")


def _worker_command(commands: Any) -> None:
    """``worker start|stop|status``: the workspace's preloaded worker that stage commands hand their runs to."""
    from pipeline.worker.control import DEFAULT_IDLE_MINUTES  # light: the standard library only

    worker = _command(commands, "worker", "start, stop or check this workspace's worker: torch, Lightning and MLflow "
                                          "imported once, each stage run forked from it", "worker",
                      epilog="Run it in the project's folder. While it runs, `dvc repro` and `dvc exp run` there hand "
                             "each stage to it and skip the stage's seconds of imports; output, exit codes and results "
                             "are those of a fresh process. PIPELINE_WORKER=off turns it off for one command. "
                             "`status` exits 3 when no worker runs.")
    worker.add_argument("action", choices=["start", "stop", "status"],
                        help="start it (in the background) unless one runs, stop it, or print what it serves")
    worker.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES,
                        help="start: exit after this many minutes without a stage run (default: %(default)s)")


def parser(prog: str = "pipeline") -> argparse.ArgumentParser:
    """The argument parser for every command, its usage lines naming the program ``prog``.

    Args:
        prog: The program name as typed: ``pipeline``, or ``python -m pipeline``.

    Returns:
        The parser; each command's namespace carries ``handler``, the name of the function that runs it.
    """
    top = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                  epilog="\n".join(["examples:", *(f"  %(prog)s {line}" for line in EXAMPLES)]),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--params", type=Path, default=DEFAULT_PARAMS,
                     help="params file, read by predict, models, preset, tune and cv (default: %(default)s; "
                          "also accepted after those commands)")
    commands = top.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND",
                                  help="one of these; `%(prog)s COMMAND --help` lists its options")
    params, registry = _shared_options()
    _registry_commands(commands, registry)
    _local_commands(commands, params)
    _search_commands(commands, params)
    _server_command(commands)
    _worker_command(commands)
    return top
