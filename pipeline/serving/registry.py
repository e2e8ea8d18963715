"""Logging, registering, resolving and loading model versions in the MLflow registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema as MlflowSchema
from mlflow.types.schema import AnyType

import pipeline
from pipeline.bundle import ModelBundle
from pipeline.errors import PipelineError

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
MODEL_INPUT = "model input"  # how the wrapper names its input in error messages


def signature(bundle: ModelBundle) -> ModelSignature:
    """Inputs: the raw feature columns by name; outputs: the label and one probability per class (or the value).

    Input columns are typed ``Any`` on purpose: MLflow's own enforcement refuses int64 values for a ``double``
    column, which would reject ordinary raw rows (``year=2007``). The bundle coerces values itself, with
    messages that name the column, so every entry point (pyfunc, ``mlflow models predict``, our CLI) accepts
    the same inputs and gives the same predictions.
    """
    inputs = MlflowSchema([ColSpec(AnyType(), name) for name in bundle.input_features])
    if bundle.task == "regression":
        outputs = MlflowSchema([ColSpec("double", "prediction")])
    else:
        outputs = MlflowSchema(
            [ColSpec("string", "prediction")] + [ColSpec("double", f"proba_{c}") for c in bundle.classes]
        )
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    """Pinned versions of what the wrapper imports, taken from this environment (no slow inference)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "pandas", "numpy", "safetensors")]


def log_bundle(bundle: ModelBundle, bundle_dir: Path, example: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log the bundle loaded from ``bundle_dir`` as a pyfunc model in the active run, with ``pipeline`` as its code."""
    example = bundle.schema.coerce(example, "input example", skip=bundle.imputer.dropped_)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        artifacts={"bundle": str(bundle_dir)},
        code_paths=[str(Path(pipeline.__file__).parent)],
        signature=signature(bundle),
        input_example=example,
        pip_requirements=requirements(),
    )


def model_uri(model: str, name: str) -> str:
    """Turn ``3``, ``champion`` or ``models:/...`` into a registry URI for registered model ``name``."""
    if model.startswith("models:/") or model.startswith("runs:/"):
        return model
    if model.isdigit():
        return f"models:/{name}/{model}"
    return f"models:/{name}@{model}"


def load(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a registered version through MLflow's own loader, with a clear error when it is not there."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(f"--model {uri}: {str(exc).splitlines()[0]}") from None


def predict(model: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """Predict raw rows, turning a schema mismatch into one line that names the input and the columns."""
    expected = model.metadata.get_input_schema().input_names()
    missing = [name for name in expected if name not in rows.columns]
    if missing:
        raise PipelineError(f"{source}: missing feature column(s) {missing}; expected {expected}")
    try:
        return model.predict(rows)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(f"{source}: {str(exc).splitlines()[-1]}") from None
    except PipelineError as exc:  # raised inside the wrapper, which cannot know the file name
        raise PipelineError(str(exc).replace(MODEL_INPUT, source, 1)) from None


def set_alias(client: MlflowClient, name: str, version: str, alias: str) -> None:
    """Point ``alias`` at ``version`` of ``name``."""
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"model {name!r}: version {version!r} not found in the registry") from None
    client.set_registered_model_alias(name, alias, version)
