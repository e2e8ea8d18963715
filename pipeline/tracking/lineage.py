"""Lineage: which data (DVC's hashes), which code (the git commit, a dirty run's diff) and which change of params
(the run name) a run is of."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.io import file_md5
from pipeline.tracking.redaction import redact


def _paths(entries: list | None) -> list[str]:
    """The paths of a ``dvc.yaml`` deps or outs list (an out may be ``{path: {cache: false}}``)."""
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]


def _overlaps(a: str, b: str) -> bool:
    """True when one path is the other or a folder holding it (``data/raw`` and ``data/raw/schema.json``)."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(f"{b}/") or b.startswith(f"{a}/")


def upstream_stages(root: Path, stage: str) -> set[str]:
    """The stages of ``dvc.yaml`` whose outputs ``stage`` reads, directly or through other stages (empty without a
    ``dvc.yaml`` or without that stage)."""
    import yaml

    try:
        stages = (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("stages", {}) or {}
    except (OSError, yaml.YAMLError):
        return set()
    outs = {name: _paths(entry.get("outs")) + _paths(entry.get("metrics")) for name, entry in stages.items()}
    found: set[str] = set()
    todo = [stage]
    while todo:
        deps = _paths((stages.get(todo.pop()) or {}).get("deps"))
        for name, paths in outs.items():
            if name not in found and any(_overlaps(d, o) for d in deps for o in paths):
                found.add(name)
                todo.append(name)
    found.discard(stage)
    return found


def dvc_tags(root: Path, stage: str = "train") -> dict[str, str]:
    """The DVC experiment running us (if any) and the md5 ``dvc.lock`` records of each output of the stages
    upstream of ``stage`` (the data it was made from).

    When train starts, DVC has locked the data stages it depends on (ingest, split, clean, scale), so their
    hashes say exactly which data this run saw. The lock's entries for train itself and for evaluate are still
    the previous run's: they describe another model, and are left out (:func:`output_tags` records this run's).
    """
    import yaml

    tags = {f"dvc.{key}": os.environ[env] for key, env in
            (("experiment", "DVC_EXP_NAME"), ("baseline_rev", "DVC_EXP_BASELINE_REV")) if os.environ.get(env)}
    lock = Path(root) / "dvc.lock"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    except (OSError, yaml.YAMLError):
        stages = {}
    upstream = upstream_stages(root, stage)
    for name, entry in stages.items():
        if name not in upstream:
            continue
        for out in entry.get("outs", []) or []:
            if "md5" in out:
                tags[f"dvc.out.{out['path']}"] = out["md5"]
    return tags


def dvc_md5(path: Path) -> str:
    """The md5 DVC records for an output: a file's md5, or for a folder the md5 of the JSON list of its files'
    ``{"md5", "relpath"}`` (sorted by relpath) followed by ``.dir``, as ``dvc_data``'s ``Tree.digest`` makes it."""
    path = Path(path)
    if not path.is_dir():
        return file_md5(path)
    entries = sorted(({"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
                      for f in path.rglob("*") if f.is_file()), key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def output_tags(root: Path, outputs: list[Path]) -> dict[str, str]:
    """``dvc.out.<path>``: the md5 DVC will lock for each output this run wrote (paths relative to ``root``)."""
    base = Path(root).resolve()
    tags = {}
    for out in outputs:
        full = Path(out) if Path(out).is_absolute() else base / out
        try:
            name = full.resolve().relative_to(base).as_posix()
        except ValueError:  # written outside the project: named as given
            name = Path(out).as_posix()
        tags[f"dvc.out.{name}"] = dvc_md5(full)
    return tags


def run_name(root: Path, params: dict[str, object]) -> str | None:
    """A run name that says what changed: ``<dvc experiment>: train.lr=0.003 model.dropout=0.2``.

    ``params`` (flattened) are compared with ``params.yaml`` at the experiment's baseline commit (or HEAD
    outside an experiment), so runs of a grid search read apart in the MLflow UI. None (MLflow picks a name)
    when nothing changed and DVC gave no experiment name.
    """
    import yaml

    from pipeline.config import flatten, parse_params

    baseline = os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD"
    done = subprocess.run(["git", "show", f"{baseline}:params.yaml"], cwd=root, capture_output=True, text=True,
                          check=False)
    before: dict[str, object] = {}
    if done.returncode == 0:
        try:
            before = flatten(parse_params(yaml.safe_load(done.stdout)))
        except (PipelineError, yaml.YAMLError):  # an old or broken baseline only costs the name its detail
            before = {}
    changed = " ".join(f"{k}={v}" for k, v in params.items() if before and before.get(k) != v)
    experiment = os.environ.get("DVC_EXP_NAME")
    name = ": ".join(part for part in (experiment, changed) if part)
    return name[:250] or None


# Files a dirty run's diff leaves out: DVC's config may hold remote credentials (`dvc remote modify` without
# --local writes them there), and where data is pushed changes nothing the run computes.
DIFF_EXCLUDES = (":(exclude).dvc/config", ":(exclude).dvc/config.local")


def git_diff(root: Path) -> str:
    """``git diff HEAD`` of tracked files (what a dirty run's code differs by), DVC's config left out and secrets
    from the environment masked; empty outside git."""
    done = subprocess.run(["git", "diff", "HEAD", "--", ":(top)", *DIFF_EXCLUDES], cwd=root, capture_output=True,
                          text=True, check=False)
    return redact(done.stdout) if done.returncode == 0 else ""


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether the working tree differs from it (``unknown`` outside a git checkout)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no")))}
