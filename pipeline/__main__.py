"""Command line: search and cross-validate, predict with a registered model, manage versions, summarise the last
run, open the MLflow UI.

    pipeline tune [--jobs N] [--apply]
    pipeline cv [--folds K]
    pipeline predict --model champion --input rows.csv --output preds.csv
    pipeline models list|pin|show|reproduce ...
    pipeline runs cleanup
    pipeline summary
    pipeline ui
    pipeline preset digits [--run]
    pipeline server start|stop|status
    pipeline worker start|stop|status

``pipeline`` is the console script ``make venv`` installs (``.venv/bin/pipeline``), the same as
``python -m pipeline``. This module holds what each command does (:data:`COMMANDS`) and the entry point;
:mod:`pipeline.cli` holds the grammar: the parser, its options and their help.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.cli import parser
from pipeline.config import load_params
from pipeline.errors import PipelineError, run_main
from pipeline.io import atomic_file, read_state

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _model_name(args: argparse.Namespace) -> str:
    """The registered model's name: ``--name``, or the params file's (read before any store is opened, so a bad
    ``--params`` is named before a missing MLflow store)."""
    return args.name or load_params(args.params).registered_model_name


def read_rows(path: Path):
    """Read raw rows from CSV or Parquet (or images from an ``.npz``), naming the file when it cannot be read."""
    import pandas as pd

    from pipeline.io import read_parquet

    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix == ".npz":  # images: the array 'x', as in the training file (labels, if any, are ignored)
        from pipeline.sources import read_images

        return read_images(path)
    if path.suffix != ".csv":
        raise PipelineError(f"{path}: expected a .csv, .parquet or .npz file, got {path.suffix or 'no extension'!r}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: expected a readable CSV file ({' '.join(str(exc).split())})") from None
    if frame.empty:
        raise PipelineError(f"{path}: expected at least one row, got none")
    return frame


def cmd_predict(args: argparse.Namespace) -> None:
    from pipeline import tracking
    from pipeline.serving import registry

    rows = read_rows(args.input)
    name = _model_name(args)
    tracking.configure(Path.cwd(), must_exist=True)
    uri = registry.model_uri(args.model, name)
    predictions = registry.predict(registry.load(uri), rows, str(args.input))
    with atomic_file(args.output) as tmp:
        predictions.to_csv(tmp, index=False)
    print(f"predict: {len(predictions)} predictions from {args.input} with {uri} -> {args.output}")


def cmd_models_list(args: argparse.Namespace) -> None:
    from pipeline import tracking

    name = _model_name(args)
    client = tracking.configure(Path.cwd(), must_exist=True)
    # search results leave aliases out, so read them from each version itself
    found = client.search_model_versions(f"name = '{name}'")
    versions = sorted((client.get_model_version(name, v.version) for v in found), key=lambda v: int(v.version))
    if not versions:
        raise PipelineError(f"model {name!r}: no registered versions in {tracking.tracking_uri(Path.cwd())}")
    print(f"{'version':>7}  {'aliases':<18} {'run id':<32}  {'test metric':<20}  {'train data md5':<14}  "
          f"{'git commit':<12}  experiment")
    for v in versions:
        run = client.get_run(v.run_id)
        metric = f"test/{run.data.params.get('evaluate.primary_metric', 'accuracy')}"
        value = run.data.metrics.get(metric)
        shown = f"{metric.removeprefix('test/')} {value:.4f}" if value is not None else "-"
        tags = run.data.tags
        print(f"{v.version:>7}  {','.join(v.aliases) or '-':<18} {v.run_id:<32}  {shown:<20}  "
              f"{tags.get('data.md5.train', '-')[:14]:<14}  {tags.get('git.commit', '-')[:12]:<12}  "
              f"{tags.get('dvc.experiment', '-')}")


# the tags ``models show`` lists under lineage: where the weights, the data and the code came from
LINEAGE_TAGS = ("git.", "dvc.", "data.md5", "seed", "device", "resumed", "tune.", "parent.")


def cmd_models_show(args: argparse.Namespace) -> None:
    from pipeline import tracking
    from pipeline.serving import registry, source

    name = _model_name(args)
    client = tracking.configure(Path.cwd(), must_exist=True)
    version = registry.model_version(client, name, args.version)
    run = client.get_run(version.run_id)
    registered = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
    print(f"{name} version {version.version}  aliases: {', '.join(version.aliases) or '-'}  "
          f"registered {registered:%Y-%m-%d %H:%M} UTC")
    print(f"  run        {run.info.run_id} ({run.info.status}) in experiment {run.info.experiment_id}")
    print(f"  source     {version.source}")
    chain = source.ancestry(client, run.info.run_id)
    print(f"  trained    {source.chain_line(f'models:/{name}/{version.version}', chain)}")
    sections = (
        ("test metrics", {k: f"{v:.4f}" for k, v in sorted(run.data.metrics.items()) if k.startswith("test/")}),
        ("lineage", {k: v for k, v in sorted(run.data.tags.items()) if k.startswith(LINEAGE_TAGS)}),
        ("environment", {k: v for k, v in sorted(run.data.tags.items()) if k.startswith("env.")}),
        ("params", dict(sorted(run.data.params.items()))),
    )
    for title, entries in sections:
        print(f"  {title}:")
        for key, value in entries.items():
            print(f"    {key:<34} {value}")


def cmd_models_reproduce(args: argparse.Namespace) -> None:
    from pipeline import tracking
    from pipeline.serving.registry import model_version
    from pipeline.serving.reproduce import reproduce

    name = _model_name(args)
    client = tracking.configure(Path.cwd(), must_exist=True)
    number = str(model_version(client, name, args.version).version)  # an alias, resolved for the messages
    verdict = reproduce(client, name, number, Path.cwd(), args.keep)
    for line in verdict.data_mismatches:
        print(f"reproduce: data differs: {line}")
    for line in verdict.environment_changes:
        print(f"reproduce: environment changed: {line}")
    if not verdict.identical:
        raise PipelineError(f"model {name!r} version {number}: rebuilt weights differ (recorded md5 "
                            f"{verdict.expected_md5}, rebuilt {verdict.reproduced_md5})")
    print(f"reproduce: {name} version {number}: weights bit-identical (md5 {verdict.reproduced_md5})")


def cmd_runs_cleanup(args: argparse.Namespace) -> None:
    from pipeline import tracking

    client = tracking.configure(Path.cwd(), must_exist=True)
    done = tracking.cleanup_runs(client)
    for run_id, what in done:
        print(f"runs: {run_id} {what}")
    if not done:
        print("runs: no run is left RUNNING")


def cmd_models_pin(args: argparse.Namespace) -> None:
    from pipeline import tracking
    from pipeline.serving import registry

    name = _model_name(args)
    client = tracking.configure(Path.cwd(), must_exist=True)
    if not args.version.isdigit():
        raise PipelineError(f"VERSION = {args.version!r}: expected a version number such as 3")
    registry.set_alias(client, name, args.version, args.alias)
    print(f"models: {name}@{args.alias} -> version {args.version}")


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    """evaluate's test metrics, a line each (per-class precision and recall after the overall ones)."""
    lines = ["", "Test metrics:"]
    lines += [f"  {name:<9} {value:.4f}" for name, value in metrics.items() if name != "per_class"]
    lines += [f"  {cls:<12} precision {values['precision']:.4f}  recall {values['recall']:.4f}  (n={values['support']})"
              for cls, values in metrics.get("per_class", {}).items()]
    return lines


def _model_lines(model: dict[str, Any]) -> list[str]:
    """What evaluate registered (``reports/model.json``) and how to predict with it."""
    if model["version"] is None:
        return ["", f"Model not registered (tracking.register_model is false); MLflow run {model['run_id']}"]
    example = {"image": "images.npz", "sequence": "series_rows.csv"}.get(model.get("modality"), "rows.csv")
    # .venv/bin/pipeline: the console script `make venv` (which `make run` needs) installs with the project
    return ["", f"Registered model: {model['name']} version {model['version']}  ({model['uri']}, run {model['run_id']})",
            f"  predict:  .venv/bin/pipeline predict --model {model['version']} --input {example} "
            "--output preds.csv"]


def cmd_summary(args: argparse.Namespace) -> None:
    reports = Path("reports")
    # formatted inside read_state, so a hand-edited file of another shape is one line naming it
    lines = read_state(reports / "metrics.json", lambda metrics: _metric_lines(metrics["test"]))
    lines += read_state(reports / "model.json", _model_lines)
    print("\n".join(lines))
    print("MLflow UI:  .venv/bin/pipeline ui   (then open http://127.0.0.1:5000)")


def cmd_ui(args: argparse.Namespace) -> None:
    from pipeline.tracking import tracking_uri

    uri = tracking_uri(Path.cwd())
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    print(f"ui: serving {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, command)


def cmd_server(args: argparse.Namespace) -> None:
    from pipeline import server

    if args.action == "start":
        now, started = server.start(args.dir, host=args.host, port=args.port, pg_port=args.pg_port,
                                    workers=args.workers, auth=args.auth, pg_user_name=args.pg_user,
                                    pg_bin_dir=args.pg_bin, timeout=args.timeout)
        if not started:
            print(f"server: already running in {args.dir} (stop it first to change its settings)")
        for line in server.describe(now, args.dir):
            print(f"server: {line}")
        if started and now.state.get("auth") and not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
            secret = args.dir / "auth" / "admin-password"
            if secret.is_file():
                print(f"server: basic auth: admin password (used when MLflow creates the admin) in {secret}")
    elif args.action == "stop":
        stopped = server.stop(args.dir)
        print(f"server: stopped {' and '.join(stopped)}" if stopped else f"server: nothing was running in {args.dir}")
    else:
        now = server.status(args.dir)
        for line in server.describe(now, args.dir):
            print(f"server: {line}")
        if not now.running:
            sys.exit(3)  # as `pg_ctl status`: 3 when not (fully) running


def cmd_tune(args: argparse.Namespace) -> None:
    from pipeline.tuning.commands import cmd_tune as tune

    if args.jobs < 1:
        raise PipelineError(f"--jobs = {args.jobs}: expected at least 1 worker process")
    tune(args)


def cmd_cv(args: argparse.Namespace) -> None:
    from pipeline.tuning.commands import cmd_cv as cv

    if args.folds is not None and args.folds < 2:
        raise PipelineError(f"--folds = {args.folds}: expected at least 2 folds")
    cv(args)


def cmd_preset(args: argparse.Namespace) -> None:
    import shlex
    import subprocess

    from pipeline.plumbing import dvc_command
    from pipeline.presets import dvc_set_args, preset

    overrides = preset(args.name, args.params, args.presets)
    command = ["dvc", "exp", "run", *dvc_set_args(overrides), *args.dvc_args]
    if not args.run:
        print(shlex.join(command))
        return
    print(f"preset: {shlex.join(command)}", flush=True)
    done = subprocess.run([dvc_command(), *command[1:]], check=False)
    if done.returncode != 0:
        raise PipelineError(f"preset {args.name!r}: dvc exp run exited {done.returncode}")


def cmd_worker(args: argparse.Namespace) -> None:
    from pipeline.worker import control

    root = Path.cwd()
    if args.action == "start":
        status, started = control.start(root, args.idle_minutes)
        if not started:
            print("worker: already running (stop it first to change --idle-minutes)")
        for line in control.describe(status):
            print(f"worker: {line}")
    elif args.action == "stop":
        status = control.stop(root)
        print(f"worker: stopped pid {status['pid']} after {status['served']} stage runs" if status
              else f"worker: none was running for {root}")
    else:
        status = control.ask(root, "status")
        if status is None:
            print(f"worker: none running for {root}")
            sys.exit(3)
        for line in control.describe(status):
            print(f"worker: {line}")


# each parser in pipeline.cli names its handler here (set_defaults(handler=...))
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "predict": cmd_predict, "models_list": cmd_models_list, "models_pin": cmd_models_pin,
    "models_show": cmd_models_show, "models_reproduce": cmd_models_reproduce, "runs_cleanup": cmd_runs_cleanup,
    "summary": cmd_summary, "ui": cmd_ui, "preset": cmd_preset, "server": cmd_server, "tune": cmd_tune, "cv": cmd_cv,
    "worker": cmd_worker,
}


def run(argv: list[str], prog: str = "pipeline") -> None:
    """Parse ``argv`` and run the chosen command; a :class:`PipelineError` propagates.

    Args:
        argv: The arguments after the program name.
        prog: The program name the usage and help lines show.
    """
    passed: list[str] = []
    if "--" in argv:  # what follows a lone -- goes to `dvc exp run` untouched (argparse would read it as options)
        argv, passed = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser(prog).parse_args(argv)
    if passed and args.command != "preset":
        raise PipelineError(f"{args.command}: expected no arguments after --, got {' '.join(passed)}")
    args.dvc_args = passed
    COMMANDS[args.handler](args)


def main(argv: list[str] | None = None, prog: str = "pipeline") -> None:
    """The ``pipeline`` console script: run a command, a failure ending it with one line and a non-zero exit.

    Args:
        argv: The arguments after the program name (default: the command line's).
        prog: The program name the usage and help lines show: ``pipeline`` for the installed command.
    """
    arguments = sys.argv[1:] if argv is None else argv
    run_main(lambda: run(arguments, prog), "pipeline")


if __name__ == "__main__":
    # argparse (Python 3.11) would name the program "__main__.py" from sys.argv[0]: name it as the user typed it
    main(prog="python -m pipeline")
