"""Lineage: which data (DVC's hashes), which code (the git commit, a dirty run's diff) and which change of params
(the run name) a run is of."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.tracking.redaction import redact


def dvc_tags(root: Path) -> dict[str, str]:
    """The DVC experiment running us (if any) and the md5 of every stage output ``dvc.lock`` records so far.

    Train runs after ingest, split, clean and scale have been locked, so their output hashes say exactly which
    data this run saw.
    """
    import yaml

    tags = {f"dvc.{key}": os.environ[env] for key, env in
            (("experiment", "DVC_EXP_NAME"), ("baseline_rev", "DVC_EXP_BASELINE_REV")) if os.environ.get(env)}
    lock = Path(root) / "dvc.lock"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    except (OSError, yaml.YAMLError):
        stages = {}
    for stage, entry in stages.items():
        for out in entry.get("outs", []) or []:
            if "md5" in out:
                tags[f"dvc.out.{out['path']}"] = out["md5"]
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
