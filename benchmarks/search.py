"""Trials per minute: ``python -m pipeline tune`` against the same configurations queued as DVC experiments.

For each dataset (a preset of ``presets.yaml``, applied over params.yaml as ``quality.py`` applies presets) the
script builds two fresh copies of the project (``quality.make_project``) and runs the same grid of configurations
(``train.lr`` x ``model.dropout``, 20 points by default) twice:

(a) ``python -m pipeline tune`` with ``tune.sampler: grid`` over exactly those points, ``tune.pruner: none`` (so
    every trial trains as long as its experiment does) and ``tune.trials`` the grid's size; the wall time includes
    tune's own ``dvc repro scale``;
(b) the user's alternative: one ``dvc exp run --queue -S train.lr=...,... -S model.dropout=...,...`` grid, then
    ``dvc queue start -j JOBS``; the wall time runs from the ``exp run --queue`` to the queue having no queued or
    running experiment (polled with ``dvc queue status`` every few seconds).

It checks that both sides ran the same configurations, and prints per side the wall time, trials per minute and
seconds per trial, and the ratio (a)/(b) in trials per minute (the issue's target: >= 10).

Usage: ``.venv/bin/python benchmarks/search.py [--datasets penguins digits] [--trials 20] [--jobs 1] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quality import BIN, ROOT, child_env, make_project, run

from pipeline.presets import load_presets

TARGET = 10.0  # the issue's: tune finishes at least 10x the trials per minute of the queued experiments
POLL_S = 5.0  # between two `dvc queue status` (each is a dvc process: polled rarely, so it costs the queue little)
TRIAL_LINE = re.compile(r"^tune: trial (\d+) (.*) \((.*)\); (?:best|no trial)")


def grid_points(trials: int) -> tuple[list[float], list[float]]:
    """The ``train.lr`` and ``model.dropout`` choices of a grid with exactly ``trials`` points.

    The dropouts are the largest divisor of ``trials`` not above its square root (20: 4 x 5), the learning rates
    the rest, log-spaced over 1e-3..0.1 (rounded to 3 significant digits, so both sides read the same numbers).
    """
    n_drop = max(d for d in range(1, math.isqrt(trials) + 1) if trials % d == 0)
    n_lr = trials // n_drop
    lrs = [float(f"{1e-3 * 100 ** (i / (n_lr - 1)):.3g}") for i in range(n_lr)] if n_lr > 1 else [0.01]
    drops = [round(0.3 * i / (n_drop - 1), 3) for i in range(n_drop)] if n_drop > 1 else [0.1]
    return lrs, drops


def tune_overrides(lrs: list[float], drops: list[float]) -> dict[str, Any]:
    """The ``tune`` section that searches exactly the grid, every trial trained to its end."""
    return {"tune.trials": len(lrs) * len(drops), "tune.timeout_minutes": None, "tune.sampler": "grid",
            "tune.pruner": "none", "tune.objective": "val",
            "tune.space": {"train.lr": {"choices": lrs}, "model.dropout": {"choices": drops}}}


def timed(args: list[str], cwd: Path, timeout: float) -> tuple[float, str]:
    """Run a command to its end: (wall seconds, stdout and stderr); a failure stops the script with its tail."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    (cwd / "command.log").write_text(output)
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise SystemExit(f"{' '.join(args)} exited {done.returncode} in {cwd}:\n{tail}")
    return seconds, output


def tune_configs(output: str) -> list[tuple[float, float]]:
    """The (lr, dropout) of each ``tune: trial N ...`` line, and a check that every trial completed."""
    configs = []
    for line in output.splitlines():
        found = TRIAL_LINE.match(line)
        if not found:
            continue
        if "fail" in found.group(2):
            raise SystemExit(f"tune: a trial failed: {line}")
        values = dict(item.split("=", 1) for item in found.group(3).split(", "))
        configs.append((float(values["train.lr"]), float(values["model.dropout"])))
    return configs


def side_tune(project: Path, jobs: int, timeout: float) -> dict[str, Any]:
    """(a): the whole ``python -m pipeline tune`` command."""
    seconds, output = timed([sys.executable, "-m", "pipeline", "tune", "--jobs", str(jobs)], project, timeout)
    configs = tune_configs(output)
    return {"seconds": seconds, "trials": len(configs), "configs": sorted(configs)}


def side_queue(project: Path, lrs: list[float], drops: list[float], jobs: int, timeout: float) -> dict[str, Any]:
    """(b): the queued grid and its workers, timed from the ``exp run --queue`` to an empty queue."""
    dvc = str(BIN / "dvc")
    grid = ["-S", "train.lr=" + ",".join(map(str, lrs)), "-S", "model.dropout=" + ",".join(map(str, drops))]
    start = time.perf_counter()
    run([dvc, "exp", "run", "--queue", *grid], project)
    run([dvc, "queue", "start", "-j", str(jobs)], project)
    try:
        while True:
            status = run([dvc, "queue", "status"], project)
            if "Queued" not in status and "Running" not in status:
                break
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"the queue did not finish in {timeout:.0f} s:\n{status}")
            time.sleep(POLL_S)
        seconds = time.perf_counter() - start
    finally:
        subprocess.run([dvc, "queue", "stop"], cwd=project, env=child_env(), capture_output=True, check=False)
    (project / "queue-status.log").write_text(status)
    ok = status.count("Success")
    if ok != len(lrs) * len(drops):
        raise SystemExit(f"the queue ran {ok} of {len(lrs) * len(drops)} experiments successfully:\n{status}")
    return {"seconds": seconds, "trials": ok, "configs": sorted((lr, d) for lr in lrs for d in drops)}


def measure(name: str, overrides: dict[str, Any], trials: int, jobs: int, work: Path,
            timeout: float) -> dict[str, Any]:
    """Both sides on one dataset, each in its own fresh copy of the project."""
    lrs, drops = grid_points(trials)
    print(f"{name}: (a) python -m pipeline tune, {trials} trials ...", flush=True)
    tuned = make_project(work / f"{name}-tune", {**overrides, **tune_overrides(lrs, drops)})
    a = side_tune(tuned, jobs, timeout)
    print(f"{name}: (a) {a['seconds']:.1f} s; (b) dvc exp run --queue + dvc queue start -j {jobs} ...", flush=True)
    queued = make_project(work / f"{name}-queue", overrides)
    b = side_queue(queued, lrs, drops, jobs, timeout)
    print(f"{name}: (b) {b['seconds']:.1f} s", flush=True)
    same = a["configs"] == b["configs"]
    return {"name": name, "tune": a, "queue": b, "same": same, "lrs": lrs, "drops": drops}


def report(rows: list[dict[str, Any]], trials: int, jobs: int) -> bool:
    """Print the table; whether every dataset meets the target."""
    head = ["dataset", "trials", "same configs", "tune s", "tune trials/min", "tune s/trial", "queue s",
            "queue trials/min", "queue s/trial", "ratio (a)/(b)", f">= {TARGET:g}x"]
    lines, ok = [head], True
    for r in rows:
        a, b = r["tune"], r["queue"]
        rate_a, rate_b = 60 * a["trials"] / a["seconds"], 60 * b["trials"] / b["seconds"]
        ratio = rate_a / rate_b
        met = ratio >= TARGET and r["same"]
        ok &= met
        lines.append([r["name"], f"{a['trials']} / {b['trials']}", "yes" if r["same"] else "NO",
                      f"{a['seconds']:.1f}", f"{rate_a:.2f}", f"{a['seconds'] / a['trials']:.2f}",
                      f"{b['seconds']:.1f}", f"{rate_b:.2f}", f"{b['seconds'] / b['trials']:.2f}",
                      f"{ratio:.2f}", "yes" if met else "NO"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for k, line in enumerate(lines):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        print(f"{r['name']}: grid train.lr {r['lrs']} x model.dropout {r['drops']}")
    print(f"jobs {jobs}: tune --jobs {jobs}, dvc queue start -j {jobs}. Wall time around each whole command: tune "
          "includes its dvc repro scale; the queue runs from dvc exp run --queue to an empty queue.")
    if trials != 20:
        print(f"note: {trials} trials, not the issue's 20: a smoke check of the harness, not the measurement")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["penguins", "digits"],
                        help="presets of presets.yaml (default: penguins digits)")
    parser.add_argument("--trials", type=int, default=20, help="grid points, the same on both sides (default 20; "
                        "fewer only for a smoke check)")
    parser.add_argument("--jobs", type=int, default=1, help="tune --jobs and dvc queue start -j (default 1)")
    parser.add_argument("--keep", type=Path, help="build the projects here and keep them (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one side may take (default 3600)")
    args = parser.parse_args()
    if args.trials < 1 or args.jobs < 1:
        parser.error("--trials and --jobs must be at least 1")
    presets = load_presets(ROOT / "presets.yaml")
    unknown = [n for n in args.datasets if n not in presets]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; presets.yaml has {list(presets)}")
    with tempfile.TemporaryDirectory(prefix="search-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [measure(n, presets[n] or {}, args.trials, args.jobs, work, args.timeout) for n in args.datasets]
    print()
    if not report(rows, args.trials, args.jobs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
