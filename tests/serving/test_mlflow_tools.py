"""End to end with MLflow's own tools: its pyfunc loader, `mlflow models predict`, a tracking server over HTTP,
and registered models whose files were tampered with to carry pickle payloads.

The local-store tests share one `dvc repro` of the default penguins project; the server test trains its own
project against a real `mlflow server` started for it. Every MLflow call that reads a model runs in a child
process, so no tracking URI or `sys.path` entry leaks into this one.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.project import BIN, call, dvc, env, make_project, run, stop_group

pytestmark = pytest.mark.slow
MODEL = "penguins-fnn"
FAST = {"train__max_epochs": 30, "train__early_stopping__patience": 5}
BUNDLE_FILES = {"weights.safetensors", "net.json", "schema.json", "imputer.json", "encoder.json", "decision.json",
                "inference.json"}
UNREADABLE_WEIGHTS = "weights.safetensors: expected a safetensors file, got an unreadable one"


def mlflow_env(uri: str) -> dict[str, str]:
    """The child environment of :func:`tests.project.env` with MLflow pointed at ``uri``."""
    return {**env(), "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}




def predict_cli(project: Path, model: str, rows: Path, out: Path, environ: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline predict`` in ``project`` (its local store unless ``environ`` says otherwise)."""
    args = [sys.executable, "-m", "pipeline", "predict", "--model", model, "--input", rows, "--output", out]
    return call(args, project, environ or env(), check=check)


def assert_same_predictions(got: pd.DataFrame, expected: pd.DataFrame, what: str, atol: float = 1e-6) -> None:
    """Same columns, same labels, probabilities equal to ``atol`` (0: bit for bit)."""
    assert list(got.columns) == list(expected.columns), what
    assert got["prediction"].tolist() == expected["prediction"].tolist(), what
    proba = [c for c in expected.columns if c.startswith("proba_")]
    np.testing.assert_allclose(got[proba].to_numpy(), expected[proba].to_numpy(), rtol=0, atol=atol, err_msg=what)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default penguins project after one `dvc repro`, with version 1 of the model registered."""
    root = make_project(tmp_path_factory.mktemp("mlflow-tools"), **FAST)
    dvc(root, "repro")
    assert yaml.safe_load((root / "reports/model.json").read_text())["version"] == 1
    return root


@pytest.fixture(scope="module")
def rows(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20 raw test rows as CSV, without the target, one extra number blanked (row 3's bill depth)."""
    frame = pd.read_parquet(project / "data/split/test.parquet").drop(columns=["species"]).head(20)
    frame = frame.reset_index(drop=True)
    frame.loc[3, "bill_depth_mm"] = np.nan
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    frame.to_csv(path, index=False)
    assert pd.isna(pd.read_csv(path).loc[3, "bill_depth_mm"])
    return path


def test_mlflow_tools_give_the_pipelines_predictions_for_a_pinned_alias(project: Path, rows: Path,
                                                                        tmp_path: Path) -> None:
    run([sys.executable, "-m", "pipeline", "models", "pin", "1", "--alias", "champion"], project)
    uri = f"models:/{MODEL}@champion"
    environ = mlflow_env(f"sqlite:///{project / 'mlflow.db'}")

    ours = tmp_path / "preds.csv"
    predict_cli(project, "champion", rows, ours)
    expected = pd.read_csv(ours)
    assert len(expected) == 20 and set(expected["prediction"]) <= {"Adelie", "Chinstrap", "Gentoo"}

    pyfunc_out = tmp_path / "pyfunc.parquet"
    code = ("import sys, mlflow, pandas as pd; "
            "mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.read_csv(sys.argv[2])).to_parquet(sys.argv[3])")
    call([sys.executable, "-c", code, uri, rows, pyfunc_out], project, environ)

    cli_out = tmp_path / "out.json"
    call([BIN / "mlflow", "models", "predict", "-m", uri, "-i", rows, "-t", "csv", "--env-manager", "local",
          "-o", cli_out], project, environ)
    written = json.loads(cli_out.read_text())
    assert list(written) == ["predictions"], list(written)  # {"predictions": [one record per row]}

    # the same code on the same rows in the same environment: bit for bit
    assert_same_predictions(pd.read_parquet(pyfunc_out), expected, "mlflow.pyfunc.load_model(...).predict", atol=0)
    assert_same_predictions(pd.DataFrame(written["predictions"]), expected, "mlflow models predict", atol=0)
    # the rows left as they were get exactly what evaluate recorded for them
    recorded = pd.read_csv(project / "reports/predictions.csv").drop(columns=["actual"]).head(20)
    untouched = [i for i in range(20) if i != 3]
    assert_same_predictions(expected.iloc[untouched], recorded.iloc[untouched], "vs reports/predictions.csv")


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` (SQLite backend, proxied artifacts) on a free port: its URL and its folder."""
    folder = tmp_path_factory.mktemp("server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    args = [BIN / "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination", folder / "artifacts", "--serve-artifacts", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    with log_path.open("w") as log:
        process = subprocess.Popen([str(a) for a in args], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                   env={**env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                   start_new_session=True)  # its own group: uvicorn is a child of it
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    pytest.fail(f"mlflow server exited {process.returncode}:\n{log_path.read_text()}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not answer /health in 60 s:\n{log_path.read_text()}")
                time.sleep(0.5)
            yield url, folder
        finally:
            stop_group(process)


def rest(url: str, endpoint: str, body: dict[str, Any] | None = None, **query: str) -> dict[str, Any]:
    """One MLflow REST call with plain urllib: GET with ``query``, or POST of ``body`` as JSON."""
    address = f"{url}/api/2.0/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(address, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_tracking_server_over_http_records_the_run_and_serves_the_model(
    server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url, folder = server
    root = make_project(tmp_path_factory.mktemp("over-http"), **FAST)
    call([BIN / "dvc", "repro"], root, mlflow_env(url))
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()  # everything went to the server

    experiment = rest(url, "mlflow/experiments/get-by-name", experiment_name="penguins")["experiment"]
    (found,) = rest(url, "mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    run_id = found["info"]["run_id"]
    assert found["info"]["status"] == "FINISHED"
    assert run_id == json.loads((root / "models/train.json").read_text())["run_id"]
    params = {p["key"]: p["value"] for p in found["data"]["params"]}
    assert params["train.lr"] == "0.01" and params["train.max_epochs"] == "30" and params["seed"] == "42"
    metrics = {m["key"]: m["value"] for m in found["data"]["metrics"]}
    assert metrics["test/accuracy"] == json.loads((root / "reports/metrics.json").read_text())["test"]["accuracy"]
    assert metrics["test/accuracy"] >= 0.9

    listed = {f["path"] for f in rest(url, "mlflow/artifacts/list", run_id=run_id)["files"]}
    assert {"config", "evaluation", "plots"} <= listed, listed
    config = {f["path"] for f in rest(url, "mlflow/artifacts/list", run_id=run_id, path="config")["files"]}
    assert "config/params.yaml" in config, config
    # MLflow 3 stores the model as a LoggedModel beside the run, linked from the run's outputs
    (output,) = found["outputs"]["model_outputs"]
    model = rest(url, f"mlflow/logged-models/{output['model_id']}")["model"]["info"]
    assert model["source_run_id"] == run_id and model["status"] == "LOGGED_MODEL_READY"
    where = model["artifact_uri"].removeprefix("mlflow-artifacts:/")
    top = {f["path"] for f in rest(url, "mlflow-artifacts/artifacts", path=where)["files"]}
    assert {"MLmodel", "mlflow_model.py", "code", "artifacts"} <= top, top
    bundle = {f["path"] for f in rest(url, "mlflow-artifacts/artifacts", path=f"{where}/artifacts/model")["files"]}
    assert bundle == BUNDLE_FILES
    stored = folder / "artifacts" / where / "artifacts/model/weights.safetensors"
    assert stored.read_bytes() == (root / "models/model/weights.safetensors").read_bytes()

    registered = rest(url, "mlflow/registered-models/get", name=MODEL)["registered_model"]
    (latest,) = registered["latest_versions"]
    assert latest["version"] == "1" and latest["run_id"] == run_id
    assert latest["source"] == f"models:/{output['model_id']}" and latest["status"] == "READY"

    test_rows = root / "test_rows.csv"
    pd.read_parquet(root / "data/split/test.parquet").drop(columns=["species"]).to_csv(test_rows, index=False)
    out = root / "preds.csv"
    predict_cli(root, "1", test_rows, out, mlflow_env(url))
    recorded = pd.read_csv(root / "reports/predictions.csv").drop(columns=["actual"])
    assert_same_predictions(pd.read_csv(out), recorded, "predict over HTTP vs reports/predictions.csv")


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code carried by a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


def registry(project: Path) -> MlflowClient:
    """A client for the project's local store (tracking and registry), leaving MLflow's global URI alone."""
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def tampered_copy(project: Path, dest: Path, marker: Path) -> Path:
    """A copy of version 1's MLflow model folder with a pickle payload as ``python_model.pkl``."""
    client = registry(project)
    logged = client.get_logged_model(client.get_model_version(MODEL, "1").source.removeprefix("models:/"))
    source = Path(urllib.parse.urlparse(logged.artifact_location).path)  # a file: URI in the local store
    assert source.is_relative_to(project / "mlruns"), source
    assert BUNDLE_FILES <= {p.name for p in (source / "artifacts/model").iterdir()}
    shutil.copytree(source, dest)
    (dest / "python_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return dest


def register(project: Path, model: Path, alias: str) -> None:
    """Register the folder ``model`` as a new version of the project's model and point ``alias`` at it."""
    client = registry(project)
    version = client.create_model_version(MODEL, source=str(model))
    client.set_registered_model_alias(MODEL, alias, version.version)


@pytest.mark.parametrize("writer", ["pickle", "torch_save"])
def test_weights_replaced_by_a_pickle_are_refused_without_running_it(project: Path, rows: Path, tmp_path: Path,
                                                                     writer: str) -> None:
    """The bundle's weights swapped for a pickle (plain, or torch.save's zip), a stray python_model.pkl beside."""
    import torch

    marker = tmp_path / "PAYLOAD_RAN"
    model = tampered_copy(project, tmp_path / "model", marker)
    weights = model / "artifacts/model/weights.safetensors"
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"layers.0.weight": Payload(marker)}))
    else:
        torch.save({"layers.0.weight": Payload(marker)}, weights)

    code = "import sys, mlflow, pandas as pd; mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.read_csv(sys.argv[2]))"
    done = call([sys.executable, "-c", code, model, rows], tmp_path, env(), check=False)
    assert done.returncode != 0
    assert f"{weights}: expected a safetensors file, got an unreadable one" in done.stderr, done.stderr
    assert not marker.exists(), "mlflow.pyfunc.load_model ran the payload"

    register(project, model, f"tampered-{writer}")
    out = tmp_path / "preds.csv"
    done = predict_cli(project, f"tampered-{writer}", rows, out, check=False)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("pipeline: error: ") and UNREADABLE_WEIGHTS in line, line
    assert not marker.exists(), "python -m pipeline predict ran the payload"
    assert not out.exists()


def test_a_version_switched_to_mlflows_pickle_loader_is_refused_by_predict(project: Path, rows: Path,
                                                                           tmp_path: Path) -> None:
    """The MLmodel edited to load python_model.pkl with MLflow's cloudpickle loader instead of the logged code."""
    marker = tmp_path / "PAYLOAD_RAN"
    model = tampered_copy(project, tmp_path / "model", marker)
    spec = yaml.safe_load((model / "MLmodel").read_text())
    flavor = spec["flavors"]["python_function"]
    del flavor["model_code_path"]
    flavor.update(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    (model / "MLmodel").write_text(yaml.safe_dump(spec))
    register(project, model, "pickled")

    done = predict_cli(project, "pickled", rows, tmp_path / "preds.csv", check=False)
    assert not marker.exists(), f"python -m pipeline predict unpickled python_model.pkl:\n{done.stderr[-2000:]}"
    assert done.returncode == 1 and "pickle" in done.stderr.strip().splitlines()[-1], done.stderr
