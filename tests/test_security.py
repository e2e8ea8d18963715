"""Security properties of the pipeline, checked on a real `dvc repro`.

1. Nothing the pipeline writes is a pickle, and nothing it loads runs code: every loadable artifact, replaced by a
   pickle (or YAML) payload that would create a marker file when deserialised, is refused by the stage or command
   that loads it, naming the file, and the marker never appears.
2. Paths from params stay inside the project: ``data.source`` cannot climb out with ``..`` or be absolute.
3. Secrets in the environment never reach MLflow: no param, tag, metric name, run name or stored byte holds them.
4. The servers the project starts listen on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from tests.asserts import assert_one_error
from tests.factories import MakeParamsDoc
from tests.project import BIN, ROOT, call, dvc, env, free_port, listening, make_project, run, stop_group, wait_for

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
STAGE_CMDS = {name: stage["cmd"].split() for name, stage in STAGES.items()}  # the commands exactly as dvc.yaml gives
FAST = {"train__max_epochs": 5, "train__early_stopping__patience": 5, "train__restarts": 2}
MODEL = "penguins-fnn"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth")
SCANNED = ("data", "models", "reports", "mlruns")


def _canary(name: str) -> str:
    return f"{name.lower().replace('_', '-')}-canary-{secrets.token_hex(12)}"


DB_PASSWORD = _canary("db-password")
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
    "AWS_SECRET_ACCESS_KEY": _canary("AWS_SECRET_ACCESS_KEY"),
    "MLFLOW_TRACKING_PASSWORD": _canary("MLFLOW_TRACKING_PASSWORD"),
    "MLFLOW_TRACKING_TOKEN": _canary("MLFLOW_TRACKING_TOKEN"),
    "GITHUB_TOKEN": "ghp_" + secrets.token_hex(18),
    "HF_TOKEN": "hf_" + secrets.token_hex(16),
    "DATABASE_URL": f"postgresql://pipeline:{DB_PASSWORD}@db.invalid:5432/experiments",
}
SECRET_VALUES = {**SECRETS, "DATABASE_URL password": DB_PASSWORD}


def secret_env() -> dict[str, str]:
    """The test environment (:func:`tests.project.env`) with every secret set."""
    return {**env(), **SECRETS}




# --- what a scan finds ---------------------------------------------------------------------------------------------


def pickle_findings(path: Path) -> list[str]:
    """Why ``path`` is (or holds) a pickle; empty if it is not one."""
    found = []
    if path.suffix in PICKLE_SUFFIXES:
        found.append(f"named {path.suffix}")
    head = path.read_bytes()[:2]
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode: pickle protocol 2 to 5
        found.append(f"starts with pickle protocol {head[1]}")
    if zipfile.is_zipfile(path) and path.suffix != ".gz":  # torch.save writes a zip holding data.pkl
        with zipfile.ZipFile(path) as archive:
            found += [f"zip member {n}" for n in archive.namelist() if n.endswith(PICKLE_SUFFIXES)]
    if path.suffix == ".npy":
        try:
            np.load(path, allow_pickle=False, mmap_mode="r")
        except ValueError as exc:  # an object array, stored as a pickle
            found.append(f"needs pickle: {exc}")
    return found


def stored_files(project: Path) -> list[Path]:
    """Every file the pipeline wrote: outputs, the MLflow artifacts and the MLflow database (with its WAL)."""
    files = [p for top in SCANNED for p in sorted((project / top).rglob("*")) if p.is_file()]
    return files + sorted(project.glob("mlflow.db*"))


def mlflow_texts(project: Path) -> dict[str, str]:
    """Every param, tag, metric name and run name MLflow holds for the project, by where it was found."""
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    texts: dict[str, str] = {}
    experiments = client.search_experiments(view_type=3)  # ViewType.ALL
    for experiment in experiments:
        texts[f"experiment {experiment.experiment_id} name"] = experiment.name
        texts[f"experiment {experiment.experiment_id} location"] = experiment.artifact_location
        texts.update({f"experiment tag {k}": f"{k}={v}" for k, v in experiment.tags.items()})
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=3)
    assert len(runs) == 3, [r.info.run_name for r in runs]  # the run and its two restarts
    for found in runs:
        where = f"run {found.info.run_id}"
        texts[f"{where} name"] = found.info.run_name or ""
        texts.update({f"{where} param {k}": f"{k}={v}" for k, v in found.data.params.items()})
        texts.update({f"{where} tag {k}": f"{k}={v}" for k, v in found.data.tags.items()})
        texts.update({f"{where} metric {k}": k for k in found.data.metrics})
    for model in client.search_registered_models():
        texts[f"model {model.name}"] = f"{model.name} {model.description or ''} {model.tags}"
        for version in client.search_model_versions(f"name = '{model.name}'"):
            texts[f"model {model.name} v{version.version}"] = (
                f"{version.source} {version.description or ''} {version.tags} {version.run_link or ''}")
    for logged in client.search_logged_models([e.experiment_id for e in experiments]):
        texts[f"logged model {logged.model_id}"] = json.dumps(logged.to_dictionary(), default=str)
    return texts


def leaks(project: Path) -> list[str]:
    """Where any secret value turns up: MLflow's entities, or the bytes of any stored file."""
    found = []
    for where, text in mlflow_texts(project).items():
        found += [f"{name} in {where}" for name, value in SECRET_VALUES.items() if value in text]
    for path in stored_files(project):
        data = path.read_bytes()
        found += [f"{name} in {path.relative_to(project)}" for name, value in SECRET_VALUES.items()
                  if value.encode() in data]
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A penguins project after one short `dvc repro` (two restarts) with secrets in the environment, scanned
    before any test tampers with it: ``root``, ``pickles`` (file: why), ``leaks`` and the files scanned."""
    root = make_project(tmp_path_factory.mktemp("security") / "project", **FAST)
    # a checkout whose remote URL carries a token, as CI clones often do: MLflow records the repo URL
    token_url = f"https://x-access-token:{SECRETS['GITHUB_TOKEN']}@github.com/example/pipeline.git"
    run(["git", "remote", "add", "origin", token_url], root)
    # uncommitted changes, so the run logs git/diff.patch: a token pasted into a tracked file, and remote
    # credentials written to .dvc/config (what `dvc remote modify` without --local does)
    with open(root / "inputs" / "README.md", "a") as stream:
        stream.write(f"\ndeploy token: {SECRETS['GITHUB_TOKEN']}\n")
    with open(root / ".dvc" / "config", "a") as stream:
        stream.write(f"['remote \"team\"']\n    url = s3://bucket/pipeline\n    access_key_id = "
                     f"{SECRETS['AWS_ACCESS_KEY_ID']}\n    secret_access_key = {SECRETS['AWS_SECRET_ACCESS_KEY']}\n")
    # and a key pasted into params.yaml as a comment: the run logs params.yaml itself as an artifact
    with open(root / "params.yaml", "a") as stream:
        stream.write(f"# the team bucket's key: {SECRETS['AWS_SECRET_ACCESS_KEY']}\n")
    call([BIN / "dvc", "repro"], root, secret_env())
    files = stored_files(root)
    return {
        "root": root,
        "files": [str(p.relative_to(root)) for p in files],
        "pickles": {str(p.relative_to(root)): why for p in files if (why := pickle_findings(p))},
        "leaks": leaks(root),
    }


# --- 1. no pickles written -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_nothing_the_pipeline_writes_is_a_pickle(project: dict[str, Any]) -> None:
    files = project["files"]
    # the scan saw every kind of output: tables, fitted state, weights, checkpoints, reports, MLflow's files
    for expected in ("data/raw/data.parquet", "data/clean/imputer.json", "data/scaled/encoder.json",
                     "models/model/weights.safetensors", "models/restarts.safetensors", "models/train.json",
                     "models/checkpoints/restart-0/last.ckpt", "reports/metrics.json", "mlflow.db"):
        assert expected in files, expected
    assert any(f.endswith("/MLmodel") for f in files) and any(f.endswith("environment/pip-freeze.txt") for f in files)
    assert project["pickles"] == {}
    # the tensor files are safetensors (a JSON header), checkpoints included
    from safetensors import safe_open

    for name in files:
        if name.endswith((".safetensors", ".ckpt")):
            with safe_open(str(project["root"] / name), framework="pt") as handle:
                assert handle.keys() is not None


# --- 1. nothing loaded runs code -------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def payload(marker: Path, writer: str) -> bytes:
    """A file that runs the marker command when deserialised: a plain pickle (binary or ASCII protocol 0), a
    ``torch.save`` zip (what ``torch.load`` without ``weights_only`` would execute), or a YAML python tag."""
    if writer == "pickle":
        return pickle.dumps(Payload(marker))
    if writer == "pickle-ascii":
        return pickle.dumps(Payload(marker), protocol=0)
    if writer == "yaml":
        return f'!!python/object/apply:os.system ["touch {marker}"]\n'.encode()
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"layers.0.weight": Payload(marker)}, buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def planted(path: Path, data: bytes):
    """``path`` replaced by ``data`` for the duration, then restored byte for byte."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.write_bytes(original)


# (file, writer, the stage that loads it, what its one error line must say)
UNREADABLE = "expected a safetensors file, got an unreadable one"
TAMPERED = [
    ("models/model/weights.safetensors", "pickle", "evaluate", UNREADABLE),
    ("models/model/weights.safetensors", "torch_save", "evaluate", UNREADABLE),
    # the bundle's other JSON files: every one in test_bundle_load_refuses_every_planted_file, here one of them
    ("models/model/net.json", "pickle-ascii", "evaluate", "expected valid JSON"),
    ("models/restarts.safetensors", "pickle", "evaluate", "expected the weights of 2 restarts"),
    ("models/restarts.safetensors", "torch_save", "evaluate", "expected the weights of 2 restarts"),
    ("models/train.json", "pickle", "evaluate", "expected valid JSON"),
    ("data/split/test.parquet", "pickle", "evaluate", "expected a Parquet file"),
    ("data/raw/schema.json", "pickle", "split", "expected valid JSON"),
    ("data/clean/imputer.json", "pickle", "scale", "expected valid JSON"),
    ("data/clean/imputer.json", "pickle-ascii", "scale", "expected valid JSON"),
    ("data/clean/report.json", "pickle", "train", "expected valid JSON"),
    ("data/scaled/encoder.json", "pickle", "train", "expected valid JSON"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "writer", "stage", "expected"), TAMPERED,
                         ids=[f"{name}-{writer}" for name, writer, _, _ in TAMPERED])
def test_a_planted_pickle_is_refused_by_the_stage_that_loads_it(
    project: dict[str, Any], tmp_path: Path, name: str, writer: str, stage: str, expected: str
) -> None:
    root, marker = project["root"], tmp_path / "PAYLOAD_RAN"
    with planted(root / name, payload(marker, writer)):
        done = run(STAGE_CMDS[stage], root, check=False)
    assert not marker.exists(), f"{stage} ran the payload planted in {name}"
    assert done.returncode == 1, done.stderr
    line = assert_one_error(done, stage)
    assert line.startswith(f"{stage}: error: {name}: {expected}"), done.stderr


@pytest.mark.slow
def test_dvc_repro_refuses_planted_weights(project: dict[str, Any], tmp_path: Path) -> None:
    """The same through `dvc repro -s -f evaluate`; DVC's checkout afterwards puts the outputs back."""
    root, marker = project["root"], tmp_path / "PAYLOAD_RAN"
    weights = "models/model/weights.safetensors"
    try:
        with planted(root / weights, payload(marker, "pickle")):
            done = dvc(root, "repro", "-s", "-f", "evaluate", check=False)
        assert not marker.exists()
        line = assert_one_error(done, "evaluate")
        assert line.startswith(f"evaluate: error: {weights}: expected a safetensors file, got an unreadable one"), line
    finally:
        dvc(root, "checkout", "-f")  # DVC removed evaluate's outputs before running it
    assert (root / "reports" / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["pickle", "pickle-ascii", "torch_save"])
def test_bundle_load_refuses_every_planted_file(project: dict[str, Any], tmp_path: Path, writer: str) -> None:
    from pipeline.bundle import ModelBundle

    marker = tmp_path / "PAYLOAD_RAN"
    for part in sorted((project["root"] / "models" / "model").iterdir()):
        bundle = tmp_path / f"model-{part.name}"
        shutil.copytree(project["root"] / "models" / "model", bundle)
        (bundle / part.name).write_bytes(payload(marker, writer))
        with pytest.raises(PipelineError, match=f"^{bundle / part.name}: expected "):
            ModelBundle.load(bundle)
        assert not marker.exists(), f"ModelBundle.load ran the payload planted in {part.name}"


@pytest.mark.slow
def test_a_planted_checkpoint_is_discarded_unrun_and_training_starts_afresh(
    project: dict[str, Any], tmp_path: Path
) -> None:
    """A checkpoint that is not this pipeline's is never resumed: loading it fails naming it, and train removes
    it and trains from scratch. In a copy of the project with its own MLflow store, as train then logs a run."""
    from pipeline.training import checkpoints

    marker = tmp_path / "PAYLOAD_RAN"
    copy = tmp_path / "project"
    shutil.copytree(project["root"], copy, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db*", "mlruns"))
    folders = [copy / "models" / "checkpoints" / f"restart-{i}" for i in (0, 1)]
    for folder, writer in zip(folders, ("pickle", "torch_save"), strict=True):
        (folder / "last.ckpt").write_bytes(payload(marker, writer))
        with pytest.raises(PipelineError, match=f"^{folder / 'last.ckpt'}: expected a training checkpoint"):
            checkpoints.load(folder / "last.ckpt")
    done = run(STAGE_CMDS["train"], copy)
    assert "resuming" not in done.stdout, done.stdout
    assert not marker.exists(), "train ran the payload planted in a checkpoint"
    for folder in folders:  # written afresh by this training, and readable as checkpoints again
        assert checkpoints.load(folder / "last.ckpt")["epoch"] >= 0
        assert pickle_findings(folder / "last.ckpt") == []


def registry(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def logged_model_folder(project: Path) -> Path:
    """Version 1's MLflow model folder in the local store."""
    client = registry(project)
    logged = client.get_logged_model(client.get_model_version(MODEL, "1").source.removeprefix("models:/"))
    folder = Path(urllib.parse.urlparse(logged.artifact_location).path)
    assert folder.is_relative_to(project / "mlruns"), folder
    return folder


LOAD_AND_PREDICT = """
import json, sys
import mlflow, pandas as pd
rows, out = pd.read_csv(sys.argv[2]), {}
for case, folder in json.loads(sys.argv[1]).items():
    try:
        mlflow.pyfunc.load_model(folder).predict(rows)
        out[case] = None
    except Exception as exc:
        out[case] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
print("RESULTS " + json.dumps(out))
"""


@pytest.mark.slow
def test_mlflow_model_files_with_planted_payloads_run_nothing(project: dict[str, Any], tmp_path: Path) -> None:
    """Every data file of the logged MLflow model (the code it is made of aside), and a python_model.pkl beside
    them, replaced in turn by a payload and loaded with MLflow's own `mlflow.pyfunc.load_model`: what is read is
    refused, naming the file where the pipeline reads it, and nothing runs the payload."""
    root, marker = project["root"], tmp_path / "PAYLOAD_RAN"
    source = logged_model_folder(root)
    names = sorted(str(p.relative_to(source)) for p in source.rglob("*")
                   if p.is_file() and p.relative_to(source).parts[0] != "code" and p.suffix != ".py")
    assert {"MLmodel", "artifacts/model/weights.safetensors", "artifacts/model/encoder.json"} <= set(names), names
    assert "python_model.pkl" not in names  # logged as code: MLflow pickled nothing
    cases = {}
    for name in [*names, "python_model.pkl"]:
        writers = ["pickle", "yaml"] if name == "MLmodel" or name.endswith(".yaml") else ["pickle"]
        for writer in writers:
            folder = tmp_path / f"model-{len(cases)}"
            shutil.copytree(source, folder)
            (folder / name).write_bytes(payload(marker, writer))
            cases[f"{name}:{writer}"] = str(folder)
    rows = tmp_path / "rows.csv"
    pd.read_parquet(root / "data/split/test.parquet").drop(columns=["species"]).head(5).to_csv(rows, index=False)
    done = call([sys.executable, "-c", LOAD_AND_PREDICT, json.dumps(cases), rows], tmp_path)
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    results = json.loads(line.removeprefix("RESULTS "))
    assert not marker.exists(), f"mlflow.pyfunc.load_model ran a planted payload: {results}"
    for case, folder in cases.items():
        name = case.split(":")[0]
        if name.startswith("artifacts/model/"):  # the bundle, read by the pipeline's own loader
            assert results[case] and f"PipelineError: {folder}/{name}: expected" in results[case], (case, results[case])
    assert results["MLmodel:pickle"] and results["MLmodel:yaml"], results  # MLflow's YAML is read safely
    assert "could not determine a constructor for the tag" in results["MLmodel:yaml"]
    assert results["python_model.pkl:pickle"] is None  # never read: the model is its code, not a pickle


@pytest.mark.slow
def test_predict_refuses_a_registered_version_with_a_planted_bundle_file(
    project: dict[str, Any], tmp_path: Path
) -> None:
    root, marker = project["root"], tmp_path / "PAYLOAD_RAN"
    folder = tmp_path / "model"
    shutil.copytree(logged_model_folder(root), folder)
    (folder / "artifacts/model/encoder.json").write_bytes(payload(marker, "pickle"))
    client = registry(root)
    version = client.create_model_version(MODEL, source=str(folder))
    client.set_registered_model_alias(MODEL, "tampered", version.version)
    rows = tmp_path / "rows.csv"
    pd.read_parquet(root / "data/split/test.parquet").drop(columns=["species"]).head(5).to_csv(rows, index=False)
    out = tmp_path / "preds.csv"
    done = run([sys.executable, "-m", "pipeline", "predict", "--model", "tampered", "--input", str(rows),
                "--output", str(out)], root, check=False)
    assert not marker.exists(), "python -m pipeline predict ran the payload"
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("pipeline: error: ") and "encoder.json: expected valid JSON" in line, line
    assert not out.exists()


def test_params_yaml_with_a_python_tag_runs_nothing(tmp_path: Path) -> None:
    """params.yaml is read with a safe loader: a YAML tag that would call os.system is an error, not a call."""
    marker = tmp_path / "PAYLOAD_RAN"
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace(
        "seed: 42", f'seed: !!python/object/apply:os.system ["touch {marker}"]', 1))
    done = call([sys.executable, "-m", "pipeline.stages.ingest", "--params", params, "--out", tmp_path / "raw"],
                ROOT, check=False)
    assert not marker.exists()
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"ingest: error: {params}: expected valid YAML") and "python/object/apply" in line, line
    assert not (tmp_path / "raw").exists()


# --- 2. paths from params stay in the project ------------------------------------------------------------------------


ESCAPES = ["inputs/../../etc/passwd.csv", "../outside.csv", "inputs/../../outside.csv", "/etc/passwd.csv",
           "inputs/sub/../../../outside.parquet", "/tmp/outside.npz", "outside.csv", "inputs/../params.csv"]


@pytest.mark.parametrize("source", ESCAPES)
def test_data_source_cannot_leave_the_project(tmp_path: Path, source: str, make_params_doc: MakeParamsDoc) -> None:
    """Refused when params.yaml is read, and by the loaders themselves for any other caller."""
    from pipeline import sources
    from pipeline.config import parse_params

    outside = tmp_path / "outside.csv"  # a readable file where a '..' would lead from tmp_path/project
    outside.write_text("a,b\n1,2\n3,4\n")
    project = tmp_path / "project"
    (project / "inputs").mkdir(parents=True)
    doc = make_params_doc(data={"source": source})
    quoted = re.escape(repr(source))
    with pytest.raises(PipelineError, match=rf"^params.yaml: data.source = {quoted}: expected one of "):
        parse_params(doc)
    if ".." in source or source.startswith("/"):
        loader = (lambda s: sources.load_images(s, "y", project)) if source.endswith(".npz") else (
            lambda s: sources.load(s, project))
        with pytest.raises(PipelineError, match=rf"^data.source = {quoted}: expected a path inside"):
            loader(source)


@pytest.mark.slow
def test_ingest_refuses_a_source_outside_the_project(tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_text("a,b\n1,2\n3,4\n")
    project = make_project(tmp_path / "project", data__source="../outside.csv", data__target="b")
    done = run(STAGE_CMDS["ingest"], project, check=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ingest: error: params.yaml: data.source = '../outside.csv': expected one of ("), line
    assert "file under inputs/" in line
    assert not (project / "data").exists()


def test_experiment_folders_stay_inside_mlruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An experiment named '.' or '..' (tracking.experiment is free text) keeps its artifacts under mlruns/."""
    from pipeline import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    client = MlflowClient(tracking.tracking_uri(tmp_path))
    for name in (".", "..", "../escape", ".hidden"):
        location = Path(urllib.parse.urlparse(client.get_experiment(
            tracking.experiment_id(client, name, tmp_path)).artifact_location).path)
        assert location.parent == tmp_path.resolve() / "mlruns" and not location.name.startswith("."), (name, location)


# --- 3. secrets never reach MLflow -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_secrets_in_the_environment_never_reach_mlflow(project: dict[str, Any]) -> None:
    assert project["leaks"] == []
    root = project["root"]
    # the dirty run's diff was logged, with the pasted token masked and DVC's config (remote credentials) left out
    (diff,) = [root / name for name in project["files"] if name.endswith("git/diff.patch")]
    text = diff.read_text()
    assert "b/inputs/README.md" in text and "+deploy token: [redacted GITHUB_TOKEN]" in text, text
    assert ".dvc/config" not in text, text
    (params,) = [root / name for name in project["files"] if name.endswith("config/params.yaml")]
    assert "# the team bucket's key: [redacted AWS_SECRET_ACCESS_KEY]" in params.read_text()


def test_redact_masks_secret_values_and_url_passwords() -> None:
    from pipeline.tracking import redact

    environ = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value-1234", "DATABASE_URL": "postgresql://u:longpassword@db/x",
               "GITHUB_SERVER_URL": "https://github.com", "API_TOKEN": "short", "PATH": "/usr/bin:/bin"}
    text = "key s3cr3t-value-1234 url https://github.com pw longpassword short /usr/bin"
    assert redact(text, environ) == ("key [redacted AWS_SECRET_ACCESS_KEY] url https://github.com pw "
                                     "[redacted DATABASE_URL] short /usr/bin")


# --- 4. servers bind to 127.0.0.1 unless told otherwise -------------------------------------------------------------


def test_servers_default_to_loopback() -> None:
    """The defaults as written; where a started server really listens is read from the kernel's socket table by
    test_ui_listens_on_loopback_only below and tests/serving/test_server_e2e.py's
    test_both_parts_listen_on_loopback_only."""
    from pipeline.cli import parser
    from pipeline.server import layout

    assert parser().parse_args(["ui"]).host == "127.0.0.1"
    assert parser().parse_args(["server", "start"]).host == "127.0.0.1"
    assert layout.DEFAULT_HOST == "127.0.0.1" and layout.PG_HOST == "127.0.0.1"
    assert "SERVER_HOST ?= 127.0.0.1" in (ROOT / "Makefile").read_text()




def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_ui_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "ui", "--port", str(port)], cwd=tmp_path,
                                   env=env(), stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> bool:  # serving requests: every socket it will listen on is bound by now
            assert process.poll() is None, f"ui exited {process.returncode}:\n{log.read_text()}"
            return _answers(f"http://127.0.0.1:{port}/health")

        wait_for(up, f"the ui to answer on port {port}", timeout=180)
        assert listening(port) == {"127.0.0.1"}, listening(port)
        assert f"at http://127.0.0.1:{port}" in log.read_text()
    finally:
        stop_group(process)
