"""Experiment latency: what one changed knob costs, stage by stage, against the code from before issue 17.

For the default penguins pipeline on this machine, in two fresh copies of the project (the working tree, and
``--before``, a commit from before the latency work), one after the other in the same run:
  - a fresh full ``dvc repro`` (a new workspace: no outputs, no MLflow store yet), then a no-op one;
  - ``dvc exp run -S train.lr=0.02`` (train and evaluate rerun);
  - ``python -m pipeline predict`` on 10 raw rows with the registered version 1;
  - each stage forced alone (``dvc repro -f -s STAGE``), and its command run directly with
    ``PYTHONPROFILEIMPORTTIME=1``, whose top-level imports are summed: the stage's import time, lazy imports
    included;
  - opening a fresh MLflow SQLite store (its schema migrations) against reopening it;
and then, in a third fresh copy of the working tree with the workspace worker started first (``python -m pipeline
worker start``, timed on its own), the same figures but the import times and the store's (a stage run by the
worker imports nothing; an import-profiled run is one the worker declines).
Prints each figure beside its "before" and the ratio now/before, and the issue's targets: the experiment <= 12 s,
the fresh repro <= 25 s, predict <= 4 s. Nothing is asserted; the machine is shared and noisy, so the best of
``--repeat`` runs counts where a figure can be repeated.

Usage: ``.venv/bin/python benchmarks/latency.py [--before 83e3ed6] [--repeat 1] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from quality import BIN, ROOT, child_env, make_project

STAGES = ("ingest", "split", "clean", "scale", "train", "evaluate")
TARGETS = {"experiment": 12.0, "fresh repro": 25.0, "predict 10 rows": 4.0}
# "import time: self [us] | cumulative | name": a top-level import has its name right after the bar.
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")
STORE_PROBE = ("import sys, time; start = time.perf_counter(); from mlflow import MlflowClient; "
               "opened = time.perf_counter(); MlflowClient(sys.argv[1]).search_experiments(); "
               "print(time.perf_counter() - opened)")


def timed(args: list[str], cwd: Path, environ: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``args`` in ``cwd``; return its wall time in seconds and its stderr. A non-zero exit stops the script."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=environ or child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} in {cwd} exited {done.returncode}:\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-3000:]}")
    return wall, done.stderr


def best(args: list[str], cwd: Path, repeat: int) -> float:
    """The shortest wall time of ``repeat`` runs of ``args``."""
    return min(timed(args, cwd)[0] for _ in range(repeat))


def import_seconds(command: str, cwd: Path) -> tuple[float, float]:
    """Run a stage's command directly with import profiling on; return its wall time and the sum of its top-level
    imports' cumulative times, in seconds."""
    environ = {**child_env(), "PYTHONPROFILEIMPORTTIME": "1"}
    wall, stderr = timed(["bash", "-c", command], cwd, environ)
    micros = sum(int(m.group(1)) for line in stderr.splitlines() if (m := IMPORT_LINE.match(line)))
    return wall, micros / 1e6


def stage_figures(project: Path, repeat: int, imports: bool = True) -> dict[str, float]:
    """Each stage forced alone through DVC, then (``imports``) run directly for its import time."""
    commands = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    figures: dict[str, float] = {}
    for stage in STAGES:
        figures[f"{stage}: dvc repro -f -s"] = best([str(BIN / "dvc"), "repro", "-f", "-s", stage], project, repeat)
        if imports:
            figures[f"{stage}: imports"] = import_seconds(commands[stage]["cmd"], project)[1]
    return figures


def store_figures(folder: Path) -> dict[str, float]:
    """Opening a new MLflow SQLite store (creating and migrating its schema) against opening it again."""
    uri = f"sqlite:///{folder / 'probe.db'}"
    probe = [str(BIN / "python"), "-c", STORE_PROBE, uri]
    first = float(subprocess.run(probe, cwd=folder, env=child_env(), capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    again = float(subprocess.run(probe, cwd=folder, env=child_env(), capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    return {"mlflow store: first open": first, "mlflow store: reopen": again}


def measure(project: Path, repeat: int, worker: bool = False) -> dict[str, float]:
    """Every figure for one fresh copy of the project, in the order a user meets them; with ``worker``, the
    workspace worker started first and stopped at the end, and no import or store figures."""
    dvc = str(BIN / "dvc")
    figures: dict[str, float] = {}
    if worker:
        figures["worker start"] = timed([str(BIN / "python"), "-m", "pipeline", "worker", "start"], project)[0]
        try:
            return figures | user_figures(project, repeat) | stage_figures(project, repeat, imports=False)
        finally:
            timed([str(BIN / "python"), "-m", "pipeline", "worker", "stop"], project)
    figures.update(user_figures(project, repeat))
    # last: running a stage's command outside DVC rewrites its outputs, so nothing after it would be a no-op
    figures.update(stage_figures(project, repeat))
    figures.update(store_figures(project))
    return figures


def user_figures(project: Path, repeat: int) -> dict[str, float]:
    """A fresh repro, a no-op one, the experiment and predict."""
    dvc = str(BIN / "dvc")
    figures = {"fresh repro": timed([dvc, "repro"], project)[0]}
    figures["no-op repro"] = best([dvc, "repro"], project, repeat)
    figures["experiment"] = timed([dvc, "exp", "run", "-S", "train.lr=0.02"], project)[0]
    rows = pd.read_parquet(project / "data/raw/data.parquet").head(10)
    rows.to_csv(project / "rows10.csv", index=False)
    predict = [str(BIN / "python"), "-m", "pipeline", "predict", "--model", "1", "--input", "rows10.csv",
               "--output", "predictions10.csv"]
    figures["predict 10 rows"] = best(predict, project, repeat)
    return figures


def report(before: dict[str, float], now: dict[str, float], worker: dict[str, float], ref: str) -> None:
    """One line per figure: before, now, now/before, now with the worker, and the target where the issue sets one
    (judged on now, and on now with the worker)."""
    print(f"\n{'figure':<30} {'before (' + ref + ')':>18} {'now':>9} {'now/before':>11} {'worker':>9}  target")

    def verdict(value: float | None, name: str) -> str:
        return "-" if value is None else "met" if value <= TARGETS[name] else "MISSED"

    for name in {**worker, **now}:
        value, served = now.get(name), worker.get(name)
        cells = [f"{before[name]:>16.2f} s" if name in before else f"{'-':>18}",
                 f"{value:>7.2f} s" if value is not None else f"{'-':>9}",
                 f"{value / before[name]:>10.2f}x" if value is not None and name in before else f"{'-':>11}",
                 f"{served:>7.2f} s" if served is not None else f"{'-':>9}"]
        target = (f"<= {TARGETS[name]:.0f} s: now {verdict(value, name)}, with the worker {verdict(served, name)}"
                  if name in TARGETS else "")
        print(f"{name:<30} {' '.join(cells)}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="83e3ed6", help="the commit to compare against (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per repeatable figure; the best counts")
    parser.add_argument("--keep", type=Path, help="build the two projects here and keep them")
    args = parser.parse_args()
    os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        results = {}
        for label, ref in (("before", args.before), ("now", None)):
            project = make_project(base / label, {}, ref=ref)
            print(f"{label}: measuring {project} ({ref or 'working tree'})", flush=True)
            results[label] = measure(project, args.repeat)
        project = make_project(base / "worker", {})
        print(f"worker: measuring {project} (working tree, worker started first)", flush=True)
        results["worker"] = measure(project, args.repeat, worker=True)
    report(results["before"], results["now"], results["worker"], args.before)
    print(f"\nmachine: {os.cpu_count()} cores; python {sys.version.split()[0]}; {ROOT}")


if __name__ == "__main__":
    main()
