"""Shared by the fault tests: big generated inputs, a `dvc repro` in the background, finding and signalling the real
stage process, and what a failed stage may and may not leave behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

from tests.project import BIN, env

STAGE_OUTS = {  # what each stage writes (dvc.yaml), the paths the fault tests check
    "ingest": ["data/raw"],
    "split": ["data/split"],
    "clean": ["data/clean"],
    "scale": ["data/scaled"],
    "train": ["models/model", "models/restarts.safetensors", "models/train.json"],
    "evaluate": ["reports/predictions.csv", "reports/model.json", "reports/diagnosis.txt", "reports/plots",
                 "reports/metrics.json"],
}
EPOCHS = 200  # penguins training long enough that a fault lands mid-training; no early stop
TRAIN = {"train__max_epochs": EPOCHS, "train__early_stopping__patience": EPOCHS, "evaluate__baselines": ["dummy"]}
WAIT_S = 240  # the longest any wait may take on a slow, shared machine before the test gives up


def write_table(path: Path, unique: int, copies: int = 1, missing: float = 0.0, rare: int = 0, seed: int = 0) -> Path:
    """A CSV of ``unique`` distinct rows written ``copies`` times: six numbers (a share ``missing`` of them
    empty), a category and a yes/no target that depends on ``x0``; ``rare`` more rows of a third class.

    Copies are exact duplicates, which ingest drops with ``data.duplicates: drop``: a big file to read, a small
    table for the later stages.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=unique).round(4) for i in range(6)})
    signal = frame["x0"].to_numpy() + rng.normal(size=unique)
    for name in list(frame.columns):
        frame.loc[rng.random(unique) < missing, name] = np.nan
    frame["kind"] = rng.choice(["a", "b", "c"], unique)
    frame["label"] = np.where(signal > 0, "yes", "no")
    if rare:
        extra = pd.DataFrame({**{f"x{i}": rng.normal(size=rare).round(4) + 5 for i in range(6)},
                              "kind": ["a"] * rare, "label": ["rare"] * rare})
        frame = pd.concat([frame, extra], ignore_index=True)
    header, body = frame.to_csv(index=False).split("\n", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as stream:
        stream.write(header + "\n")
        for _ in range(copies):
            stream.write(body)
    return path


def link_input(source: Path, project: Path, name: str = "big.csv") -> Path:
    """Hard-link a generated input into ``project/inputs`` (nothing ever writes into it in place)."""
    target = project / "inputs" / name
    target.unlink(missing_ok=True)
    os.link(source, target)
    return target


@dataclass
class Repro:
    """A ``dvc repro`` running in the background, its output going to files (a pipe could fill and block it)."""

    process: subprocess.Popen
    out: Path
    err: Path

    def wait(self, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
        """The finished repro; a hang guard: still running after ``timeout`` s, it is killed and the test fails."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"dvc repro still running after {timeout} s (killed):\n{self.err.read_text()}"
                                 ) from None
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, self.out.read_text(),
                                           self.err.read_text())

    def stage(self, name: str) -> psutil.Process | None:
        """The stage's own Python process (``python -m pipeline.stages.<name>``), not dvc nor its shell."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if f"pipeline.stages.{name}" in child.cmdline():
                    return child
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        return None

    def kill_group(self) -> None:
        """Stop whatever is left of this repro (after a failed assertion)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=60)


def start_repro(project: Path, *args: str, extra_env: dict[str, str] | None = None) -> Repro:
    """Start ``dvc repro`` in ``project`` in its own process group."""
    logs = project.parent / f"{project.name}-logs"
    logs.mkdir(exist_ok=True)
    count = len(list(logs.glob("*.out")))
    out, err = logs / f"{count}.out", logs / f"{count}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        # SIGINT back to its default: a CI runner that starts the suite in the background has it ignored, which
        # every child would inherit, and Ctrl-C (tests/faults/test_interrupts.py) would then do nothing
        process = subprocess.Popen([str(BIN / "dvc"), "repro", *args], cwd=project, env={**env(), **(extra_env or {})},
                                   start_new_session=True, stdout=stdout, stderr=stderr, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return Repro(process, out, err)


def wait_until(repro: Repro, what: str, ready: Callable[[], object], poll: float = 0.001) -> object:
    """Poll ``ready`` until it returns something truthy; fail if the repro ends first or after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = ready()
        if found:
            return found
        if repro.process.poll() is not None:
            done = repro.wait()
            raise AssertionError(
                f"dvc repro ended (exit {done.returncode}) before {what}:\n{done.stdout}\n{done.stderr}")
        if time.monotonic() > deadline:
            repro.kill_group()
            raise AssertionError(f"no sign after {WAIT_S} s that {what}")
        time.sleep(poll)


def temp_leftovers(project: Path) -> list[str]:
    """Temporary names of the atomic writers (``.<name>.tmp-*``) under the output folders, checkpoints included."""
    found = []
    for folder in ("data", "models", "reports"):
        root = project / folder
        if root.is_dir():
            found += [str(p.relative_to(project)) for p in root.rglob(".*") if ".tmp-" in p.name]
    return sorted(found)


def snapshot(project: Path, paths: list[str]) -> dict[str, dict[str, str] | None]:
    """md5 of every file under each path (None for a path that is absent)."""
    out: dict[str, dict[str, str] | None] = {}
    for rel in paths:
        path = project / rel
        if not path.exists():
            out[rel] = None
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out[rel] = {str(f.relative_to(project)): hashlib.md5(f.read_bytes()).hexdigest() for f in files}
    return out


def lock_stages(project: Path) -> dict:
    """The stage entries of ``dvc.lock`` (empty without one)."""
    lock = project / "dvc.lock"
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}


def _client(project: Path):
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():  # SQLAlchemy's deprecation notices about MLflow's own mappers
        warnings.simplefilter("ignore", DeprecationWarning)
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        client.search_experiments(max_results=1)
    return client


def runs(project: Path) -> list:
    """Every MLflow run in the project's local store (none without a store)."""
    if not (project / "mlflow.db").is_file():
        return []
    client = _client(project)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def registered_versions(project: Path) -> list:
    """Every registered model version in the project's local store."""
    return _client(project).search_model_versions() if (project / "mlflow.db").is_file() else []


def epoch_saved(path: Path) -> int:
    """The last epoch a training checkpoint holds (-1 without one).

    No error is caught: saves are atomic, so a checkpoint read while training writes the next one is always
    whole; a partial one raises the ``PipelineError`` naming it and fails the test.
    """
    from pipeline.training import checkpoints

    return int(checkpoints.load(path)["epoch"]) if path.is_file() else -1




def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a project (git, DVC cache and lock, outputs) that DVC treats as the same workspace."""
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*-logs", "__pycache__"))
    return dest
