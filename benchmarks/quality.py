"""Test-split quality: each preset's network against scikit-learn baselines fitted on the same split.

For each preset in ``presets.yaml`` (dotted params.yaml keys applied over params.yaml) the script copies the project
into a temporary git repo, runs ``dvc repro`` there and reads the network's test metrics from
``reports/metrics.json``. It then fits scikit-learn baselines on the very scaled train split the network trained on
(``data/scaled`` through ``pipeline.training.arrays.load_xy``, inputs flattened to 2-D) and scores them on the same test
split: logistic regression, a random forest and an RBF SVC for classification; linear regression, a random forest and
an RBF SVR for regression (r2 decides; MAE is shown in the target's original units, as metrics.json reports it).
Sequence presets also get a 1-nearest-neighbour DTW baseline (full window, squared-Euclidean local cost, real steps
only). Prints one table and exits 1 if a network scores below its best baseline or below the issue's absolute
target (digits >= 0.98, penguins >= 0.97, gunpoint >= 0.907: the published 1-NN DTW accuracy on GunPoint).

Usage: ``.venv/bin/python benchmarks/quality.py [--presets penguins digits ...] [--keep DIR] [--ref HEAD]``

``--defaults`` instead judges the default params.yaml on the datasets of ``benchmarks/suite.py``, which the project
never tuned on (see ``benchmarks/defaults.py``):
``quality.py --defaults [--datasets iris rare ...] [--set train.lr=0.001 ...] [--jobs 2] [--json FILE] [--smoke]``

``--defaults --tuned [--tune-trials 30]`` adds a "tuned" column: after a dataset's defaults row, in the same project
copy, ``python -m pipeline tune --apply`` searches a space fit for any table (:func:`tuned_space`; the objective is
cross-validation below 2,000 train examples, else the validation split), adopts the best trial through
``dvc exp run`` and evaluates it on test. Its target: the tuned network matches or beats the best baseline on every
dataset (accuracy and macro F1, or R^2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pipeline, the code the copied projects run, not an installed one

from pipeline.evaluation.baselines import flat_inputs  # noqa: E402
from pipeline.presets import load_presets, overlay  # noqa: E402

BIN = Path(sys.executable).parent
PROJECT_FILES = ("pipeline", "inputs", "dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvc/config",
                 ".dvc/.gitignore")
# The absolute targets (test accuracy). GunPoint's: 1-NN DTW, full window, test error 0.093 on the archive's
# own 50/150 train/test split (UCR Time Series Classification Archive, Dau et al., 2018).
TUNE_TRIALS = 30
CV_BELOW = 2000  # train examples under which a search's objective is cross-validation (small val splits are noisy)
TARGETS = {"digits": 0.98, "penguins": 0.97, "gunpoint": 0.907}
UCR_GUNPOINT_DTW = 0.907


def child_env() -> dict[str, str]:
    """This venv first on PATH, no MLFLOW_* variables (each project uses its own store), a git identity."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    return out


def run(args: list[str], cwd: Path) -> str:
    """Run a command in ``cwd``; on a non-zero exit, stop with the tail of its output."""
    done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise SystemExit(f"{' '.join(args)} exited {done.returncode} in {cwd}:\n{tail}")
    return done.stdout


def make_project(dest: Path, overrides: dict[str, Any], ref: str | None = None,
                 prepare: Callable[[Path], None] | None = None) -> Path:
    """Copy the project into ``dest``, apply dotted params overrides, and commit it to a fresh git repo.

    Args:
        dest: A new folder.
        overrides: Dotted params.yaml keys and their values; each key must already exist in params.yaml.
        ref: Copy the project files from this git commit instead of the working tree.
        prepare: Called with the project folder before the commit (to write a dataset into ``inputs/``).
    """
    if dest.exists():
        raise SystemExit(f"{dest} exists; pass a fresh --keep folder")
    dest.mkdir(parents=True)
    if ref:
        tracked = run(["git", "ls-tree", "--name-only", ref, "--", *PROJECT_FILES], ROOT).split()
        archive = subprocess.run(["git", "archive", ref, "--", *tracked], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for name in () if ref else PROJECT_FILES:
        source, target = ROOT / name, dest / name
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    path = dest / "params.yaml"
    params = overlay(yaml.safe_load(path.read_text()), overrides)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    if prepare is not None:
        prepare(dest)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        run(args, dest)
    return dest


def trained_kind(project: Path) -> str:
    """The kind of network the project's repro trained (``model.kind: auto`` settled; an ensemble's members')."""
    path = project / "models/model/net.json"
    if not path.is_file():
        return "-"
    spec = json.loads(path.read_text())
    return spec["member"]["kind"] if spec.get("kind") == "ensemble" else spec["kind"]


def dtw_1nn(train: np.ndarray, train_y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """1-NN labels under DTW (full window, squared-Euclidean local cost) over the real steps of each series.

    Args:
        train: (N, T, F + 1) padded series, the last channel the mask of real steps (a prefix of each series).
        train_y: (N,) labels.
        test: (M, T, F + 1) as ``train``.

    Returns:
        (M,) the label of each test series' nearest train series.
    """
    la, lb = test[..., -1].sum(1).astype(int), train[..., -1].sum(1).astype(int)
    a, b = test[:, : la.max(), :-1].astype("float64"), train[:, : lb.max(), :-1].astype("float64")
    n_a, n_b = a.shape[1], b.shape[1]
    ends_a, ends_b = la[:, None] - 1, lb[None, :] - 1  # each pair's DTW distance is its cell (la - 1, lb - 1)
    dist = np.full((len(a), len(b)), np.inf)
    prev = np.full((n_b, len(a), len(b)), np.inf)  # row i - 1 of the DP, for every (test, train) pair
    for i in range(n_a):
        cost = ((a[:, None, i, None, :] - b[None, :, :, :]) ** 2).sum(-1).transpose(2, 0, 1)  # (n_b, M, N)
        row = np.empty_like(prev)
        for j in range(n_b):
            if i == 0:
                best = row[j - 1] if j else 0.0
            elif j == 0:
                best = prev[0]
            else:
                best = np.minimum(np.minimum(prev[j], prev[j - 1]), row[j - 1])
            row[j] = cost[j] + best
        done = ends_a == i
        if done.any():
            pick = np.take_along_axis(row, np.broadcast_to(ends_b, dist.shape)[None], 0)[0]
            dist = np.where(done, pick, dist)
        prev = row
    return train_y[dist.argmin(1)]


def majority(project: Path, target: str) -> int:
    """The class index of the most frequent label (or series label) in the train split, before clean rebalanced it:
    the majority baseline must not depend on how the network's train split was resampled."""
    import pandas as pd

    state = json.loads((project / "data/scaled/encoder.json").read_text())
    frame = pd.read_parquet(project / "data/split/train.parquet")
    series = (state.get("sequence") or {}).get("series")
    labels = (frame.drop_duplicates(series) if series else frame)[target].astype(str)
    return [str(c) for c in state["target"]["classes_"]].index(labels.value_counts().idxmax())


def models(task: str, seed: int, extra: bool, sequence: bool, majority: int | None = None) -> dict[str, Any]:
    """The unfitted scikit-learn baselines; ``extra`` adds the dummy (the ``majority`` class, or the mean) and, for
    sequences, a Euclidean 1-NN."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR

    if task == "classification":
        out = {"logistic": LogisticRegression(max_iter=5000),
               "forest": RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=2), "svm": SVC()}
        dummy, nearest = DummyClassifier(strategy="constant", constant=majority), KNeighborsClassifier(n_neighbors=1)
    else:
        out = {"linear": LinearRegression(),
               "forest": RandomForestRegressor(n_estimators=500, random_state=seed, n_jobs=2), "svm": SVR()}
        dummy, nearest = DummyRegressor(strategy="mean"), KNeighborsRegressor(n_neighbors=1)
    if extra:
        out["dummy"] = dummy
        if sequence:  # 1-NN Euclidean on the flattened series (padding zeroed), the time-series baseline
            out["euclid_1nn"] = nearest
    return out


def baselines(
    project: Path, target: str, seed: int, extra: bool = False
) -> tuple[str, int, dict[str, dict[str, float]]]:
    """Fit and score scikit-learn baselines on the project's scaled train/test splits.

    Args:
        project: A project whose ``dvc repro`` got through the scale stage.
        target: The target column.
        seed: The forests' seed.
        extra: Also fit the dummy (the majority class of the train split as drawn, or the mean) and, for
            sequences, 1-NN Euclidean.

    Returns:
        The task, the number of test examples, and per baseline its metrics (accuracy and macro F1, or r2, MAE and
        RMSE in the target's original units).
    """
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, root_mean_squared_error

    from pipeline.training.arrays import load_xy

    task = json.loads((project / "data/raw/schema.json").read_text())["task"]
    folder = project / "data/scaled"
    (x_tr, y_tr), (x_te, y_te) = (
        (x.numpy(), y.numpy()) for x, y in (load_xy(folder, s, target, task) for s in ("train", "test")))
    sequence = x_tr.ndim == 3
    flat = [flat_inputs(x, sequence) for x in (x_tr, x_te)]
    top = majority(project, target) if extra and task == "classification" else None
    fitted = {name: m.fit(flat[0], y_tr).predict(flat[1])
              for name, m in models(task, seed, extra, sequence, top).items()}
    if task == "classification":
        if sequence:
            fitted["dtw_1nn"] = dtw_1nn(x_tr, y_tr, x_te)
        labels = np.union1d(y_tr, y_te)  # every class, as the pipeline's macro F1 counts them
        scores = {name: {"accuracy": accuracy_score(y_te, p),
                         "macro_f1": f1_score(y_te, p, labels=labels, average="macro", zero_division=0)}
                  for name, p in fitted.items()}
        return task, len(y_te), scores
    # load_xy gives standardised targets: back to the target's units, as metrics.json reports the network's
    state = json.loads((folder / "encoder.json").read_text())["target"]
    center, scale = float(state["center_"]), float(state["scale_"])
    actual = y_te.astype("float64") * scale + center
    scores = {}
    for name, p in fitted.items():
        predicted = p.astype("float64") * scale + center
        scores[name] = {"r2": r2_score(actual, predicted), "mae": mean_absolute_error(actual, predicted),
                        "rmse": root_mean_squared_error(actual, predicted)}
    return task, len(y_te), scores


def evaluate(name: str, overrides: dict[str, Any], work: Path, ref: str | None) -> dict[str, Any]:
    """Run the pipeline for one preset in ``work/<name>`` and score it against the baselines."""
    project = make_project(work / name, overrides, ref)
    start = time.perf_counter()
    run([str(BIN / "dvc"), "repro"], project)
    seconds = time.perf_counter() - start
    params = yaml.safe_load((project / "params.yaml").read_text())
    net = json.loads((project / "reports/metrics.json").read_text())["test"]
    task, n_test, scores = baselines(project, params["data"]["target"], params["seed"])
    metric = "accuracy" if task == "classification" else "r2"
    best = max(scores, key=lambda k: scores[k][metric])
    target = TARGETS.get(name)
    ok = net[metric] >= scores[best][metric] and (target is None or net[metric] >= target)
    return {"name": name, "task": task, "n_test": n_test, "metric": metric, "net": net, "scores": scores,
            "best": best, "target": target, "ok": ok, "seconds": seconds,
            "model": trained_kind(project)}


def report(rows: list[dict[str, Any]]) -> None:
    """Print one table over all presets (regression rows add MAE in the target's units, which does not decide)."""
    names = ["logistic/linear", "forest", "svm", "dtw_1nn"]
    head = ["preset", "model", "n test", "metric", "network", *names, "best baseline", "target", "net >= best",
            "repro s"]
    lines = [head]
    for r in rows:
        def cell(key: str, metric: str, fmt: str = ".4f") -> str:
            key = {"logistic/linear": "logistic" if r["task"] == "classification" else "linear"}.get(key, key)
            return format(r["scores"][key][metric], fmt) if key in r["scores"] else "-"
        best = f"{r['best']} {r['scores'][r['best']][r['metric']]:.4f}"
        lines.append([r["name"], r["model"], str(r["n_test"]), r["metric"], f"{r['net'][r['metric']]:.4f}",
                      *(cell(k, r["metric"]) for k in names), best, "-" if r["target"] is None else f">= {r['target']}",
                      "yes" if r["ok"] else "NO", f"{r['seconds']:.0f}"])
        if r["task"] == "regression":
            best_mae = min(r["scores"], key=lambda k: r["scores"][k]["mae"])
            lines.append(["", "", "", "mae (units)", f"{r['net']['mae']:.2f}", *(cell(k, "mae", ".2f") for k in names),
                          f"{best_mae} {r['scores'][best_mae]['mae']:.2f}", "", "(r2 decides)", ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for k, line in enumerate(lines):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if any(r["name"] == "gunpoint" for r in rows):
        print(f"\ngunpoint: published 1-NN DTW (full window) test accuracy {UCR_GUNPOINT_DTW} (error 0.093) on the "
              "archive's own 50/150 split (UCR Time Series Classification Archive, Dau et al., 2018); dtw_1nn above "
              "is the same classifier on this pipeline's seeded stratified split of all 200 series.")
    if any(r["task"] == "regression" for r in rows):
        print("regression: r2 decides; MAE is in the target's original units (baselines' predictions unscaled with "
              "data/scaled/encoder.json's target mean and spread), as reports/metrics.json gives the network's.")


def tuned_space(modality: str) -> dict[str, Any]:
    """The ``tune.space`` of ``--tuned``: the optimiser's rate and the regularisation for any network, and the layers
    the model kind reads (tables: the FNN's hidden layers; images and sequences: the CNN's dense head and channels)."""
    space: dict[str, Any] = {"train.lr": {"low": 1.0e-4, "high": 0.1, "log": True},
                             "train.weight_decay": {"low": 1.0e-6, "high": 1.0e-2, "log": True},
                             "model.dropout": {"low": 0.0, "high": 0.5}}
    if modality == "tabular":
        return space | {"model.hidden": {"choices": [[64, 32], [128, 64], [256, 128, 64]]}}
    return space | {"model.hidden": {"choices": [[], [64], [128, 64]]},
                    "model.cnn.channels": {"choices": [[32, 64], [64, 128, 64]]}}


def tune_section(project: Path, trials: int) -> dict[str, Any]:
    """The dotted ``tune`` keys for a project whose data stages ran: cv below :data:`CV_BELOW` train examples."""
    import pandas as pd

    modality = json.loads((project / "data/raw/schema.json").read_text())["modality"]
    series = yaml.safe_load((project / "params.yaml").read_text())["data"]["sequence"]["id"]
    frame = pd.read_parquet(project / "data/split/train.parquet")
    examples = int(frame[series].nunique()) if series else len(frame)
    return {"tune.trials": trials, "tune.timeout_minutes": None,
            "tune.objective": "cv" if examples < CV_BELOW else "val", "tune.space": tuned_space(modality)}


def apply_tuned(project: Path, trials: int, timeout: float) -> dict[str, Any]:
    """Write the tune section into the project's params.yaml (committed), run ``tune --apply``: its test metrics."""
    import signal

    from defaults import error_line

    section = tune_section(project, trials)
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(overlay(yaml.safe_load(path.read_text()), section), sort_keys=False))
    run(["git", "commit", "-qm", "tune section", "params.yaml"], project)
    out: dict[str, Any] = {"objective": section["tune.objective"], "trials": trials}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "tune", "--apply"], cwd=project, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # dvc and the stages too
        process.communicate()
        return out | {"seconds": time.perf_counter() - start, "error": f"tune --apply timed out after {timeout:.0f} s"}
    out["seconds"] = time.perf_counter() - start
    (project / "tune.log").write_text(output)
    if process.returncode != 0:
        return out | {"error": error_line(output)}
    found = re.search(r"best trial \d+: \S+ (-?[\d.]+) on validation", output)
    test = json.loads((project / "reports/metrics.json").read_text())["test"]
    return out | {"net": {k: v for k, v in test.items() if isinstance(v, int | float)},
                  "val": float(found.group(1)) if found else None,
                  "best_params": [line.removeprefix("tune:   ") for line in output.splitlines()
                                  if line.startswith("tune:   ")]}


def judge_tuned(name: str, sets: dict[str, Any], work: Path, ref: str | None, timeout: float,
                trials: int) -> dict[str, Any]:
    """The defaults row of ``name`` (``defaults.judge``), then the tuned network in the same project copy."""
    from defaults import EPS, METRICS, judge

    row = judge(name, sets, work, ref, timeout)
    if row["status"] != "ok":
        return row | {"tuned": {"error": "the defaults row failed"}}
    tuned = apply_tuned(Path(row["project"]), trials, 4 * timeout)
    if "net" in tuned:
        tuned["why"] = [f"{m} {tuned['net'].get(m, float('nan')):.4f} < best ({row['best'][m][0]}) "
                        f"{row['best'][m][1]:.4f}" for m in METRICS[row["task"]]
                        if not tuned["net"].get(m, -np.inf) >= row["best"][m][1] - EPS]
        tuned["ok"] = not tuned["why"]
    return row | {"tuned": tuned}


def tuned_report(rows: list[dict[str, Any]]) -> None:
    """Per dataset and deciding metric: defaults, tuned, the best baseline; then each search's best params."""
    from defaults import METRICS, table

    lines = []
    for r in rows:
        t = r.get("tuned", {})
        if "net" not in t:
            lines.append([r["name"], "-", "-", "-", "-", "-", "FAILED: " + (t.get("error") or r.get("error", "")),
                          t.get("objective", "-"), "-", f"{t.get('seconds', 0):.0f}"])
            continue
        for k, metric in enumerate(METRICS[r["task"]]):
            name, best = r["best"][metric]
            lines.append(["" if k else r["name"], metric, f"{r['net'][metric]:.4f}", f"{t['net'][metric]:.4f}",
                          f"{name} {best:.4f}", f"{t['net'][metric] - best:+.4f}",
                          "yes" if t["net"][metric] >= best - 1e-9 else "NO",
                          "" if k else t["objective"], "" if k or t["val"] is None else f"{t['val']:.4f}",
                          "" if k else f"{t['seconds']:.0f}"])
    table(["dataset", "metric", "defaults", "tuned", "best baseline", "tuned - best", "tuned >= best", "objective",
           "best val", "tune s"], lines)
    for r in rows:
        if r.get("tuned", {}).get("best_params"):
            print(f"{r['name']}: tuned {', '.join(r['tuned']['best_params'])}")
    print("target (--tuned): the tuned network (tune --apply: the best trial, chosen on validation or cv, adopted "
          "through dvc exp run and evaluated on test) matches or beats the best baseline on every dataset and metric")


def run_tuned(args: argparse.Namespace) -> None:
    """``--defaults --tuned``: each dataset's defaults row, then its tuned network, then both tables."""
    from defaults import SMOKE_SETS, parse_sets
    from defaults import report as defaults_report
    from suite import SMOKE, SUITE

    if not args.defaults:
        raise SystemExit("--tuned goes with --defaults")
    chosen = args.datasets or (list(SMOKE) if args.smoke else list(SUITE))
    unknown = [n for n in chosen if n not in SUITE]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown}; expected names from {list(SUITE)}")
    sets = {**(SMOKE_SETS if args.smoke else {}), **parse_sets(args.set or [])}
    import pipeline.training.data  # noqa: F401 - torch imported once, before the worker threads race to it

    start, rows = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="tuned-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(judge_tuned, n, sets, work, args.ref, args.timeout, args.tune_trials)
                       for n in chosen]
            print(f"{len(chosen)} datasets, {args.jobs} at a time, {args.tune_trials} trials each: "
                  f"{', '.join(chosen)}", flush=True)
            for future in as_completed(futures):
                row = future.result()
                rows[row["name"]] = row
                t = row["tuned"]
                said = "failed" if "net" not in t else "matches or beats the best baseline" if t["ok"] else "misses it"
                print(f"  {row['name']}: tuned {said} ({row['seconds']:.0f} s repro, {t.get('seconds', 0):.0f} s "
                      "tune --apply)", flush=True)
    ordered = [rows[n] for n in chosen]
    print(f"\n{len(ordered)} datasets in {time.perf_counter() - start:.0f} s; params.yaml defaults"
          f"{f' with {sets}' if sets else ''}, then tune --apply ({args.tune_trials} trials); test split metrics\n")
    defaults_report(ordered)
    print()
    tuned_report(ordered)
    if args.json:
        args.json.write_text(json.dumps(ordered, indent=1, default=float))
    if not all(r["tuned"].get("ok") for r in ordered):
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", help="names from presets.yaml (default: all)")
    parser.add_argument("--keep", type=Path, help="build the projects here and keep them (default: a temp dir)")
    parser.add_argument("--ref", help="take the project from this git commit instead of the working tree "
                        "(presets.yaml is always read from the working tree)")
    suite = parser.add_argument_group("--defaults: the default params on the datasets of benchmarks/suite.py")
    suite.add_argument("--defaults", action="store_true", help="judge params.yaml's defaults instead of the presets")
    suite.add_argument("--datasets", nargs="+", help="names from benchmarks/suite.py (default: all)")
    suite.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a candidate default, a dotted params.yaml key (value read as YAML), on every dataset; "
                       "repeatable")
    suite.add_argument("--jobs", type=int, default=1, help="projects run at once (default 1)")
    suite.add_argument("--json", type=Path, help="write the rows to this file")
    suite.add_argument("--timeout", type=float, default=900, help="seconds one dvc repro may take (default 900)")
    suite.add_argument("--tuned", action="store_true", help="also run tune --apply in each dataset's project and "
                       "judge the tuned network against the best baseline")
    suite.add_argument("--tune-trials", type=int, default=TUNE_TRIALS,
                       help=f"trials of each --tuned search (default {TUNE_TRIALS})")
    suite.add_argument("--smoke", action="store_true", help="a quick harness check: iris, outliers and shapes with "
                       "train.max_epochs 3 (its verdicts measure nothing)")
    args = parser.parse_args()
    if args.tuned:
        run_tuned(args)
        return
    if args.defaults or args.smoke:
        from defaults import run_suite

        run_suite(args)
        return
    if args.datasets or args.set or args.json or args.jobs != 1:
        parser.error("--datasets, --set, --jobs and --json go with --defaults")
    if args.tune_trials != TUNE_TRIALS:
        parser.error("--tune-trials goes with --tuned")
    presets = load_presets(ROOT / "presets.yaml")
    chosen = args.presets or list(presets)
    unknown = [n for n in chosen if n not in presets]
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; presets.yaml has {list(presets)}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in chosen:
            print(f"{name}: dvc repro ...", flush=True)
            rows.append(evaluate(name, presets[name] or {}, work, args.ref))
    print(f"\n{len(rows)} presets in {time.perf_counter() - start:.0f} s (seed from params.yaml; test split metrics)\n")
    report(rows)
    if not all(r["ok"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
