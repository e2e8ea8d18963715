"""``quality.py --defaults``: the default params.yaml on datasets the project never tuned on, against baselines.

For each dataset of :mod:`suite` the project is copied into a temporary git repo, the table is written to
``inputs/<name>.csv`` (or ``.parquet``), and only ``data.source``, ``data.target`` (and ``data.sequence.id`` /
``time`` for sequences) are set over params.yaml, plus any ``--set`` candidates. A real ``dvc repro`` trains and
evaluates the network; scikit-learn baselines are then fitted on the same scaled train split and scored on the same
test rows (:func:`quality.baselines` with the dummy and, for sequences, 1-NN Euclidean and 1-NN DTW).

The issue's target, per dataset: classification, the network within 0.02 of the best baseline on test accuracy and
on macro F1; regression, within 0.05 on R^2; and never below the majority-class / mean baseline. A dataset whose
repro fails is reported with its error line: a failure is a result, and the other datasets still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml
from quality import BIN, ROOT, baselines, child_env, make_project, trained_kind
from suite import SMOKE, SUITE, Dataset

from pipeline.errors import PipelineError
from pipeline.presets import overlay

# how far below the best baseline the network may score and still meet the target
TOLERANCE = {"accuracy": 0.02, "macro_f1": 0.02, "r2": 0.05}
METRICS = {"classification": ("accuracy", "macro_f1"), "regression": ("r2",)}
SMOKE_SETS = {"train.max_epochs": 3}  # --smoke checks the harness end to end; its verdicts measure nothing
EPS = 1e-9  # a tie is not a loss


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["train.lr=0.001", "model.hidden=[128, 64]"]`` -> dotted keys with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. train.lr=0.001")
        out[key.strip()] = yaml.safe_load(value)
    return out


def error_line(output: str) -> str:
    """The one line that says why a repro failed: the stage's own ``<stage>: error: ...`` line, else the last
    exception line of a traceback, else DVC's ``ERROR`` line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^[\w-]+: (error|interrupted|terminated)\b", r"^[\w.]*(Error|Exception)\b.*:",
                    r"^ERROR\b"):
        found = [line for line in lines if re.match(pattern, line)]
        if found:
            return found[-1]
    return lines[-1] if lines else "no output"


def repro(project: Path, timeout: float) -> str | None:
    """``dvc repro`` in ``project``: None when it succeeds, else the error line (or the timeout)."""
    process = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env=child_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the stage's python too, not only dvc
        process.communicate()
        return f"dvc repro timed out after {timeout:.0f} s"
    (project / "repro.log").write_text(output)
    if process.returncode == 0:
        return None
    stage = re.findall(r"failed to reproduce '([\w-]+)'", output)
    line = error_line(output)
    return line if not stage or line.startswith(f"{stage[-1]}:") else f"[{stage[-1]}] {line}"


def write(dataset: Dataset, path: Path) -> None:
    """The table as the user's file under ``inputs/``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        dataset.frame.to_parquet(path, index=False)
    else:
        dataset.frame.to_csv(path, index=False)


def verdict(task: str, net: dict[str, float], scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Best baseline per metric, and whether the network meets the issue's target (with the reasons if not)."""
    best, why = {}, []
    for metric in METRICS[task]:
        name = max(scores, key=lambda k: scores[k][metric])
        best[metric] = [name, scores[name][metric]]
        value = net.get(metric)
        if value is None:
            why.append(f"{metric}: missing from reports/metrics.json")
            continue
        if value < best[metric][1] - TOLERANCE[metric] - EPS:
            why.append(f"{metric} {value:.4f} < best ({name}) {best[metric][1]:.4f} - {TOLERANCE[metric]}")
        if value < scores["dummy"][metric] - EPS:
            why.append(f"{metric} {value:.4f} < dummy {scores['dummy'][metric]:.4f}")
    if task == "regression":
        name = min(scores, key=lambda k: scores[k]["rmse"])
        best["rmse"] = [name, scores[name]["rmse"]]
    return {"best": best, "ok": not why, "why": why}


def kept_rows(project: Path) -> dict[str, Any]:
    """Rows in the file and rows ingest kept (it drops rows without a target, and repeats where it does)."""
    path = project / "data/raw/profile.json"
    profile = json.loads(path.read_text()) if path.exists() else {}
    return {"rows_loaded": profile.get("rows_loaded"), "rows_kept": profile.get("rows")}


def rows_cell(r: dict[str, Any]) -> str:
    loaded, kept = r.get("rows_loaded"), r.get("rows_kept")
    return "-" if loaded is None else str(loaded) if loaded == kept else f"{loaded}->{kept}"


def judge(name: str, sets: dict[str, Any], work: Path, ref: str | None, timeout: float) -> dict[str, Any]:
    """Build, repro and score one dataset of the suite: one row of the report."""
    dataset = SUITE[name]()
    source = f"inputs/{name}{dataset.suffix}"
    overrides: dict[str, Any] = {"data.source": source, "data.target": dataset.target}
    if dataset.series is not None:
        overrides |= {"data.sequence.id": dataset.series, "data.sequence.time": dataset.step}
    project = make_project(work / name, overrides | sets, ref, prepare=lambda p: write(dataset, p / source))
    params = yaml.safe_load((project / "params.yaml").read_text())
    start = time.perf_counter()
    error = repro(project, timeout)
    row: dict[str, Any] = {"name": name, "about": dataset.about, "model": trained_kind(project),
                           "seconds": time.perf_counter() - start, "sets": sets, "project": str(project),
                           **kept_rows(project)}
    if error is not None:
        return row | {"status": "failed", "ok": False, "error": error}
    metrics = json.loads((project / "reports/metrics.json").read_text())
    net = {k: v for k, v in metrics["test"].items() if isinstance(v, int | float)}
    try:
        task, n_test, scores = baselines(project, dataset.target, params["seed"], extra=True)
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported, the suite goes on
        return row | {"status": "failed", "ok": False, "error": f"baselines: {type(exc).__name__}: {exc}"}
    return row | {"status": "ok", "task": task, "n_test": n_test, "net": net, "scores": scores,
                  "evaluate_baselines": metrics.get("baselines"), **verdict(task, net, scores)}


def table(head: list[str], lines: list[list[str]]) -> None:
    """Print left-aligned columns under a ruled header."""
    widths = [max(len(line[i]) for line in [head, *lines]) for i in range(len(head))]
    for k, line in enumerate([head, *lines]):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print()


def classification_lines(rows: list[dict[str, Any]]) -> list[list[str]]:
    lines = []
    for r in rows:
        net, dummy, best = r["net"], r["scores"]["dummy"], r["best"]
        (acc_name, acc), (f1_name, f1) = best["accuracy"], best["macro_f1"]
        lines.append([r["name"], r["model"], rows_cell(r), str(r["n_test"]), f"{net['accuracy']:.4f}",
                      f"{acc_name} {acc:.4f}", f"{net['accuracy'] - acc:+.4f}", f"{net['macro_f1']:.4f}",
                      f"{f1_name} {f1:.4f}",
                      f"{net['macro_f1'] - f1:+.4f}", f"{net['macro_f1'] / f1:.3f}" if f1 else "-",
                      f"{dummy['accuracy']:.4f} / {dummy['macro_f1']:.4f}", "yes" if r["ok"] else "NO",
                      f"{r['seconds']:.0f}"])
    return lines


def regression_lines(rows: list[dict[str, Any]]) -> list[list[str]]:
    lines = []
    for r in rows:
        net, dummy, best = r["net"], r["scores"]["dummy"], r["best"]
        (r2_name, r2), (rmse_name, rmse) = best["r2"], best["rmse"]
        lines.append([r["name"], r["model"], rows_cell(r), str(r["n_test"]), f"{net['r2']:.4f}", f"{r2_name} {r2:.4f}",
                      f"{net['r2'] - r2:+.4f}", f"{net['rmse']:.4g}", f"{rmse_name} {rmse:.4g}",
                      f"{net['rmse'] / rmse:.3f}" if rmse else "-", f"{dummy['r2']:.4f} / {dummy['rmse']:.4g}",
                      "yes" if r["ok"] else "NO", f"{r['seconds']:.0f}"])
    return lines


def every_baseline(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per scored dataset: its deciding metric for the network and each baseline."""
    names = ["logistic/linear", "forest", "svm", "dummy", "euclid_1nn", "dtw_1nn"]
    lines = []
    for r in rows:
        metric = METRICS[r["task"]][0]
        cells = []
        for name in names:
            key = ("logistic" if r["task"] == "classification" else "linear") if name == "logistic/linear" else name
            cells.append(f"{r['scores'][key][metric]:.4f}" if key in r["scores"] else "-")
        lines.append([r["name"], metric, f"{r['net'][metric]:.4f}", *cells])
    return lines


def report(rows: list[dict[str, Any]]) -> None:
    """The classification table, the regression table, each baseline's score, the failures and the reasons."""
    scored = [r for r in rows if r["status"] == "ok"]
    classified = [r for r in scored if r["task"] == "classification"]
    regressed = [r for r in scored if r["task"] == "regression"]
    if classified:
        table(["dataset", "model", "rows", "n test", "accuracy", "best baseline", "diff", "macro F1", "best baseline",
               "diff", "F1 ratio", "dummy acc / F1", "pass", "repro s"], classification_lines(classified))
    if regressed:
        table(["dataset", "model", "rows", "n test", "R^2", "best baseline", "diff", "RMSE", "best RMSE", "RMSE ratio",
               "dummy R^2 / RMSE", "pass", "repro s"], regression_lines(regressed))
    if scored:
        table(["dataset", "metric", "network", "logistic/linear", "forest", "svm", "dummy", "euclid_1nn", "dtw_1nn"],
              every_baseline(scored))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        table(["dataset", "model", "repro s", "FAILED"], [[r["name"], r["model"], f"{r['seconds']:.0f}", r["error"]]
                                                         for r in failed])
    for r in scored:
        if not r["ok"]:
            print(f"{r['name']}: misses the target: {'; '.join(r['why'])}")
    print("rows: in the file -> kept by ingest (tables: rows; sequences: rows of all steps); n test: test rows, or "
          "test series")
    print(f"target: classification within {TOLERANCE['accuracy']} of the best baseline on test accuracy and on "
          f"macro F1, regression within {TOLERANCE['r2']} on R^2 (RMSE in the target's units), and never below the "
          "dummy (majority class / mean). Baselines: quality.py's, fitted on the same scaled train split.")


def run_suite(args: argparse.Namespace) -> None:
    """The ``--defaults`` mode of quality.py."""
    chosen = args.datasets or (list(SMOKE) if args.smoke else list(SUITE))
    unknown = [n for n in chosen if n not in SUITE]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; expected names from {list(SUITE)}")
    sets = {**(SMOKE_SETS if args.smoke else {}), **parse_sets(args.set or [])}
    try:
        params = overlay(yaml.safe_load((ROOT / "params.yaml").read_text()), sets, source="--set")
    except PipelineError as exc:
        raise SystemExit(str(exc)) from None
    if args.jobs > 1 and params["train"]["cpu_threads"] != 1:
        print(f"note: train.cpu_threads = {params['train']['cpu_threads']} with --jobs {args.jobs}: "
              "the trainings share the cores", flush=True)
    if args.keep and any((args.keep / n).exists() for n in chosen):
        raise SystemExit(f"{args.keep} already holds some of {chosen}; pass a fresh --keep folder")
    import pipeline.training.data  # noqa: F401 - torch imported once, before the worker threads race to it

    start = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="defaults-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(judge, n, sets, work, args.ref, args.timeout): n for n in chosen}
            print(f"{len(chosen)} datasets, {args.jobs} at a time: {', '.join(chosen)}", flush=True)
            for future in as_completed(futures):
                row = future.result()
                rows[row["name"]] = row
                said = "failed" if row["status"] == "failed" else "meets the target" if row["ok"] else "misses it"
                print(f"  {row['name']}: {said} ({row['seconds']:.0f} s)", flush=True)
    ordered = [rows[n] for n in chosen]
    what = "params.yaml defaults" + (f" with {sets}" if sets else "")
    print(f"\n{len(ordered)} datasets in {time.perf_counter() - start:.0f} s; {what}; test split metrics\n")
    report(ordered)
    if args.json:
        args.json.write_text(json.dumps(ordered, indent=1, default=float))
    if not all(r["ok"] for r in ordered):
        raise SystemExit(1)
