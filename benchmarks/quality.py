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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
    suite.add_argument("--smoke", action="store_true", help="a quick harness check: iris, outliers and shapes with "
                       "train.max_epochs 3 (its verdicts measure nothing)")
    args = parser.parse_args()
    if args.defaults or args.smoke:
        from defaults import run_suite

        run_suite(args)
        return
    if args.datasets or args.set or args.json or args.jobs != 1:
        parser.error("--datasets, --set, --jobs and --json go with --defaults")
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
