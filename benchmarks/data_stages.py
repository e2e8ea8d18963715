"""Benchmark the data stages (ingest -> split -> clean -> scale) against a bare pandas + scikit-learn script.

Per size, a seeded table (N rows x 35 float64 + 15 text categoricals, 5% missing, a 3-class target ~70/20/10,
0.1% rows without target, 0.1% exact duplicates) is generated once to a temporary Parquet file, in a
subprocess: Linux carries a parent's RSS at fork into a child's ``ru_maxrss``, so the parent stays small.
Each side then runs in a fresh subprocess (peak RSS per run), doing the same work with the same Parquet
reads and writes between steps; loading the source is timed as ingest, imports are not. A child whose RSS
passes ``--max-rss-gib`` is killed and reported. Prints measured ratios; nothing is asserted.

Usage: ``.venv/bin/python benchmarks/data_stages.py [--sizes 100000 1000000 5000000] [--repeat 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark the working tree's pipeline

TARGET, SEED, VAL, TEST = "target", 42, 0.15, 0.2  # split fractions and seed as in params.yaml
N_NUMERIC, N_CATEGORICAL, MISSING, ODD_ROWS = 35, 15, 0.05, 0.001
STAGES = ("ingest", "split", "clean", "scale")
MIB = 2**20


def make_table(rows: int, seed: int = SEED) -> pd.DataFrame:
    """Generate ``rows`` rows of 50 features (5% missing each) and a target; 0.1% lack a target, 0.1% are copies."""
    rng = np.random.default_rng(seed)
    dup_at, dup_of = rng.choice(rows, size=(2, int(rows * ODD_ROWS)), replace=False)
    data: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        col = rng.normal(rng.uniform(-100, 100), rng.uniform(0.1, 50), rows)
        col[rng.random(rows) < MISSING] = np.nan
        col[dup_at] = col[dup_of]
        data[f"num_{i:02d}"] = col
    for i in range(N_CATEGORICAL):
        weights = 1.0 / np.arange(1, 6 + i)  # 5..19 levels, skewed so most_frequent is well defined
        codes = rng.choice(len(weights), size=rows, p=weights / weights.sum())
        codes[rng.random(rows) < MISSING] = -1
        codes[dup_at] = codes[dup_of]
        levels = [f"c{i}_v{j}" for j in range(len(weights))]
        data[f"cat_{i:02d}"] = pd.Categorical.from_codes(codes, levels).astype("str")
    labels = rng.choice(3, size=rows, p=[0.7, 0.2, 0.1])
    labels[dup_at] = labels[dup_of]
    labels[rng.choice(np.setdiff1d(np.arange(rows), np.concatenate([dup_at, dup_of])), int(rows * ODD_ROWS))] = -1
    data[TARGET] = pd.Categorical.from_codes(labels, ["a", "b", "c"]).astype("str")
    return pd.DataFrame(data)


class Clock:
    """Accumulates wall time per stage and records the peak RSS reached by the end of each stage."""

    def __init__(self, work: Path) -> None:
        self.work, self.times, self.rss, self.base = work, dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0.0), 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one (possibly resumed) stage, leaving the progress so far in ``work/progress.json``."""
        self.base = self.base or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports
        progress = {"stage": name, "times": self.times, "rss": self.rss, "base": self.base}
        (self.work / "progress.json").write_text(json.dumps(progress))  # read by the parent if it kills us
        start = time.perf_counter()
        yield
        self.times[name] += time.perf_counter() - start
        self.rss[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB


def run_pipeline(src: Path, work: Path, clock: Clock) -> tuple[int, tuple[int, int]]:
    """Run the four stages' own ``main``s in-process, as ``dvc repro`` would, on ``inputs/bench.parquet``.

    A params file in ``work`` points ``data.source`` at the generated table; everything else keeps
    ``params.yaml``'s defaults (median / most-frequent imputation, upsampling, standardising, one-hot).
    """
    import pyarrow.parquet as pq
    import yaml

    from pipeline.stages import clean, ingest, scale, split

    table = int(src.with_suffix(".bytes").read_text())
    (work / "inputs").mkdir()
    (work / "inputs" / "bench.parquet").symlink_to(src)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="inputs/bench.parquet", target=TARGET, task="classification", drop=[])
    params["split"].update(val=VAL, test=TEST)
    params["seed"] = SEED
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    os.chdir(work)
    argv = {
        "ingest": ["--out", "data/raw"],
        "split": ["--raw", "data/raw", "--out", "data/split"],
        "clean": ["--raw", "data/raw", "--split", "data/split", "--out", "data/clean"],
        "scale": ["--raw", "data/raw", "--clean", "data/clean", "--out", "data/scaled"],
    }
    for name, module in (("ingest", ingest), ("split", split), ("clean", clean), ("scale", scale)):
        with clock.stage(name), contextlib.redirect_stdout(io.StringIO()):
            sys.argv = [name, *argv[name]]
            module.main()
    # the shape from the file's metadata: reading the scaled table back would add its size to the peak RSS
    meta = pq.read_metadata(work / "data/scaled/train.parquet")
    return table, (meta.num_rows, meta.num_columns)


def run_bare(src: Path, work: Path, clock: Clock) -> tuple[int, tuple[int, int]]:
    """The same work written directly with pandas and scikit-learn, with the same Parquet files in between."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

    def read(step: str) -> dict[str, pd.DataFrame]:
        return {name: pd.read_parquet(work / f"{step}_{name}.parquet") for name in ("train", "val", "test")}

    def write(step: str, frames: dict[str, pd.DataFrame]) -> None:
        for name, frame in frames.items():
            frame.to_parquet(work / f"{step}_{name}.parquet", index=False)

    with clock.stage("ingest"):
        frame = pd.read_parquet(src)
    table = int(frame.memory_usage(deep=True).sum())
    with clock.stage("ingest"):
        # repeated rows are kept and counted, as ingest does by default (data.duplicates: keep)
        frame = frame.dropna(subset=[TARGET]).reset_index(drop=True)
        frame.attrs["rows_repeated"] = int(frame.duplicated().sum())
        frame.to_parquet(work / "raw.parquet", index=False)
    numeric = [c for c in frame.columns if c.startswith("num_")]
    categorical = [c for c in frame.columns if c.startswith("cat_")]
    del frame
    with clock.stage("split"):
        frame = pd.read_parquet(work / "raw.parquet")
        rest, test = train_test_split(frame, test_size=TEST, stratify=frame[TARGET], random_state=SEED)
        train, val = train_test_split(rest, test_size=VAL / (1 - TEST), stratify=rest[TARGET], random_state=SEED)
        write("split", {"train": train, "val": val, "test": test})
    del frame, rest, train, val, test
    with clock.stage("clean"):
        frames = read("split")
        num = SimpleImputer(strategy="median").fit(frames["train"][numeric])
        cat = SimpleImputer(strategy="most_frequent").fit(frames["train"][categorical])
        for frame in frames.values():
            frame[numeric] = num.transform(frame[numeric])
            frame[categorical] = cat.transform(frame[categorical])
        train, counts = frames["train"], frames["train"][TARGET].value_counts()
        extra = [train[train[TARGET] == c].sample(counts.max() - n, replace=True, random_state=SEED)
                 for c, n in counts.items() if n < counts.max()]
        frames["train"] = pd.concat([train, *extra], ignore_index=True)
        write("clean", frames)
    del frames, frame, train, extra
    with clock.stage("scale"):
        frames = read("clean")
        encoder = ColumnTransformer([
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32), categorical),
        ]).fit(frames["train"])
        labels = LabelEncoder().fit(frames["train"][TARGET])
        for name, frame in frames.items():
            out = pd.DataFrame(encoder.transform(frame).astype(np.float32), columns=encoder.get_feature_names_out())
            out[TARGET] = labels.transform(frame[TARGET])
            frames[name] = out
        write("scaled", frames)
    return table, frames["train"].shape


def child(side: str, src: Path, work: Path) -> None:
    """Run one side once and print its measurements as one JSON line."""
    clock = Clock(work)
    table, shape = (run_pipeline if side == "pipeline" else run_bare)(src, work, clock)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"table": table, "shape": shape, "times": clock.times, "rss": clock.rss, "peak": peak,
                      "base": clock.base, "total": sum(clock.times.values())}))


def spawn(args: list[str], work: Path, limit: float) -> dict[str, Any]:
    """Run this script with ``--child args`` in a fresh interpreter; kill it if its RSS passes ``limit`` MiB."""
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            rss = next(int(ln.split()[1]) for ln in status.read_text().splitlines() if ln.startswith("VmRSS")) / 1024
        except (OSError, StopIteration):
            rss = 0.0
        if rss > limit:
            proc.kill()
            proc.communicate()
            progress = work / "progress.json"
            done = json.loads(progress.read_text()) if progress.exists() else {"stage": args[0]}
            return {**done, "killed": f"killed in {done['stage']} at {rss:,.0f} MiB RSS"}
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def report(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    """Print the summary table, per-stage times and time growth."""
    print(f"\n{'rows':>10} {'table MiB':>9} {'pipeline s':>10} {'bare s':>8} {'ratio':>6} {'pipe RSS MiB':>12} "
          f"{'bare RSS MiB':>12} {'RSS/table':>9} {'growth/table':>12}\n" + "-" * 96)
    for size, sides in results.items():
        pipe, bare = sides["pipeline"], sides["bare"]
        if "killed" in pipe:
            print(f"{size:>10,}  pipeline: {pipe['killed']}; bare: {bare.get('killed', 'completed')}")
            continue
        table = pipe["table"] / MIB
        if "killed" in bare:  # the pipeline's own figures still stand; there is no ratio to give
            bare_s, ratio, bare_rss = "killed", "-", "killed"
        else:
            bare_s, ratio, bare_rss = f"{bare['total']:.2f}", f"{pipe['total'] / bare['total']:.2f}", f"{bare['peak']:,.0f}"
        print(f"{size:>10,} {table:>9,.0f} {pipe['total']:>10.2f} {bare_s:>8} {ratio:>6} "
              f"{pipe['peak']:>12,.0f} {bare_rss:>12} {pipe['peak'] / table:>9.2f} "
              f"{(pipe['peak'] - pipe['base']) / table:>12.2f}")
    print("RSS/table: pipeline peak RSS / table in-memory size; growth/table: the same less the RSS after imports")
    print("\nper stage: seconds (peak RSS MiB by the end of the stage); scaled train rows x columns")
    for size, sides in results.items():
        for side, r in sides.items():
            done = STAGES[: STAGES.index(r["stage"])] if "killed" in r else STAGES
            cells = "  ".join(f"{s} {r['times'][s]:6.2f} ({r['rss'][s]:6,.0f})" for s in done)
            end = f"  {r['killed']}" if "killed" in r else f"  {r['shape'][0]:,} x {r['shape'][1]}"
            print(f"{size:>10,} {side:<8} imports ({r['base']:,.0f})  {cells}{end}")
    for side in ("pipeline", "bare"):
        per = [f"{n:,}: {r[side]['total'] / n * 1e6:.1f}" for n, r in results.items() if "killed" not in r[side]]
        print(f"time growth, {side}: seconds per million rows at " + (", ".join(per) or "no completed run"))
    print("targets: ratio <= 1.5; pipeline peak RSS <= 4x table; seconds per million rows roughly constant")


def main() -> None:
    """Parse options; per size generate the table once, run both sides ``--repeat`` times, then report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and side; the fastest is reported")
    parser.add_argument("--max-rss-gib", type=float, default=16.0, help="kill a run whose RSS exceeds this")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # SIDE SRC WORK, or generate ROWS PATH
    args = parser.parse_args()
    if args.child and args.child[0] == "generate":
        start = time.perf_counter()
        table = make_table(int(args.child[1]))
        table.to_parquet(args.child[2], index=False)
        # the in-memory size, recorded here so neither side has to load the table just to measure it
        Path(args.child[2]).with_suffix(".bytes").write_text(str(int(table.memory_usage(deep=True).sum())))
        return print(json.dumps({"seconds": time.perf_counter() - start}))
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.child[2]))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-data-stages-") as tmp:
        for size in args.sizes:
            src = Path(tmp) / f"source-{size}.parquet"
            made = spawn(["generate", str(size), str(src)], Path(tmp), args.max_rss_gib * 1024)
            if "killed" in made:
                raise SystemExit(f"generating {size:,} rows: {made['killed']} (lower --sizes or raise --max-rss-gib)")
            print(f"# {size:,} rows: {src.stat().st_size / MIB:,.0f} MiB Parquet, generated in {made['seconds']:.1f} s",
                  flush=True)
            runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "bare": []}
            for rep in range(args.repeat):
                for side in runs:  # interleaved, so both sides see the same machine state
                    work = Path(tmp) / f"{side}-{size}-{rep}"
                    runs[side].append(spawn([side, str(src), str(work)], work, args.max_rss_gib * 1024))
                    shutil.rmtree(work)
            results[size] = {side: next((r for r in rs if "killed" in r), None) or min(rs, key=lambda r: r["total"])
                             for side, rs in runs.items()}
            src.unlink()
    report(results)


if __name__ == "__main__":
    main()
