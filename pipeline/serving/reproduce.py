"""Reproduce a registered model version from its recorded commit, diff and params, and compare the weights.

The version's run recorded ``git.commit`` (and ``git/diff.patch`` when the tree was dirty) and logged the exact
``params.yaml``. A fresh clone of this repository at that commit, with the diff applied and those params, runs
the whole pipeline with its own throwaway MLflow store (nothing is registered in the user's), and the new
weights are compared byte for byte with the version's.

A fine-tuned version (its run names a ``parent.*``) is rebuilt from the very parent it was trained from, whatever
an alias in its ``train.init_from`` points at now: that version's artifacts are copied from the user's store into
the throwaway one and registered there, and the rebuild's ``train.init_from`` names that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.tracking import file_md5


@dataclass(frozen=True)
class Verdict:
    """What a reproduction found."""

    identical: bool
    expected_md5: str
    reproduced_md5: str
    data_mismatches: list[str]
    environment_changes: list[str]


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} in {cwd}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def copy_parent(client: MlflowClient, run, store: str, work: Path) -> str | None:  # noqa: ANN001
    """Register, in the throwaway ``store``, a copy of the version ``run`` was fine-tuned from (its ``parent.*``
    tags, read from ``client``'s store); the copy's ``models:/`` URI, or ``None`` for a model trained from scratch.

    Raises:
        PipelineError: If the parent version is no longer in the registry or its artifacts cannot be read.
    """
    tags = run.data.tags
    if "parent.name" not in tags:
        return None
    name, version = tags["parent.name"], tags["parent.version"]
    uri = f"models:/{name}/{version}"
    try:
        client.get_model_version(name, version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(work / "parent"),
                                                         tracking_uri=client.tracking_uri,
                                                         registry_uri=client._registry_uri))
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise PipelineError(f"reproduce: the parent {uri} that run {run.info.run_id} was fine-tuned from cannot be "
                            f"read ({' '.join(str(exc).split())[:200]}); expected it in the registry") from None
    throwaway = MlflowClient(store, registry_uri=store)
    experiment = throwaway.create_experiment("parent", artifact_location=(work / "parent-artifacts").as_uri())
    copy = throwaway.create_run(experiment)
    throwaway.log_artifacts(copy.info.run_id, str(local), "model")
    throwaway.set_terminated(copy.info.run_id)
    throwaway.create_registered_model(name)
    registered = throwaway.create_model_version(name, f"{copy.info.artifact_uri}/model", copy.info.run_id)
    return f"models:/{name}/{registered.version}"


def _set_init_from(path: Path, uri: str) -> None:
    """Point ``train.init_from`` of the params file at ``path`` to ``uri`` (every other value as it was)."""
    import yaml

    params = yaml.safe_load(path.read_text())
    params["train"]["init_from"] = uri
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _weights(folder: Path) -> Path:
    found = sorted(Path(folder).rglob("weights.safetensors"))
    if not found:
        raise PipelineError(f"{folder}: expected the model's weights.safetensors, found none")
    return found[0]


def reproduce(client: MlflowClient, name: str, version: str, repo: Path, keep: Path | None = None) -> Verdict:
    """Rebuild version ``version`` of ``name`` from the git repository ``repo`` and compare its weights.

    Args:
        client: A client on the store that holds the version.
        name: The registered model name.
        version: The version number.
        repo: A git repository holding the recorded commit (the project itself).
        keep: Where to build (kept afterwards); by default a temporary folder, removed afterwards.

    Raises:
        PipelineError: When the run lacks a commit, the commit is not in ``repo``, or the pipeline fails.
    """
    from pipeline.serving.registry import model_version

    entry = model_version(client, name, version)
    run = client.get_run(entry.run_id)
    commit = run.data.tags.get("git.commit", "unknown")
    if commit == "unknown":
        raise PipelineError(f"model {name!r} version {entry.version}: its run recorded no git commit to rebuild from")
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="reproduce-"))
    try:
        return _rebuild(client, entry, run, commit, Path(repo), work)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _rebuild(client: MlflowClient, entry, run, commit: str, repo: Path, work: Path) -> Verdict:  # noqa: ANN001
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    _git(["clone", "-q", "--no-checkout", str(repo.resolve()), str(project)], work)
    try:
        _git(["checkout", "-q", commit], project)
    except PipelineError:
        raise PipelineError(f"commit {commit[:12]} (recorded by run {run.info.run_id}) is not in {repo}") from None
    logged = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config",
                                                      dst_path=str(work / "logged")))
    if run.data.tags.get("git.dirty") == "True":
        diff = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="git/diff.patch",
                                                        dst_path=str(work / "logged")))
        _git(["apply", "--whitespace=nowarn", str(diff)], project)
    shutil.copy(logged / "params.yaml", project / "params.yaml")  # the params exactly as the run used them
    if (repo / "inputs").is_dir():  # users' data files need not be in git
        shutil.copytree(repo / "inputs", project / "inputs", dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"  # a throwaway store: nothing is registered
    copied = copy_parent(client, run, env["MLFLOW_TRACKING_URI"], work)
    if copied is not None:
        _set_init_from(project / "params.yaml", copied)
    if not (project / ".dvc").is_dir():
        subprocess.run(["dvc", "init", "-q"], cwd=project, env=env, check=False)
    print(f"reproduce: dvc repro of {commit[:12]} in {project}", flush=True)
    done = subprocess.run(["dvc", "repro", "--force"], cwd=project, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise PipelineError(f"reproduce: dvc repro failed in {project}: {tail}")
    original = Path(mlflow.artifacts.download_artifacts(artifact_uri=entry.source, dst_path=str(work / "model")))
    expected, reproduced = file_md5(_weights(original)), file_md5(_weights(project / "models" / "model"))
    tags = run.data.tags
    mismatches = [
        f"{split}: recorded {tags[f'data.md5.{split}']}, rebuilt {file_md5(project / 'data' / 'scaled' / f'{split}.parquet')}"
        for split in ("train", "val", "test")
        if f"data.md5.{split}" in tags
        and tags[f"data.md5.{split}"] != file_md5(project / "data" / "scaled" / f"{split}.parquet")
    ]
    from pipeline.tracking import environment_tags

    now = environment_tags(project)
    changes = [f"{k}: {tags[k]} then, {v} now" for k, v in now.items()
               if k in tags and tags[k] != v and k not in ("env.requirements_lock_md5", "env.torch_threads")]
    return Verdict(expected == reproduced, expected, reproduced, mismatches, changes)
