"""Logging, registering, resolving and loading model versions in the MLflow registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema as MlflowSchema, TensorSpec
from mlflow.types.schema import AnyType

import pipeline
from pipeline.errors import PipelineError

if TYPE_CHECKING:  # the bundle (and torch with it) is loaded by the pyfunc model: `models show` needs neither
    from pipeline.bundle import ModelBundle

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
MODEL_INPUT = "model input"  # how the wrapper names its input in error messages


def signature(bundle: ModelBundle) -> ModelSignature:
    """Inputs: the raw feature columns by name; outputs: the label and one probability per class (or the value).

    Input columns are typed ``Any`` on purpose: MLflow's own enforcement refuses int64 values for a ``double``
    column, which would reject ordinary raw rows (``year=2007``). The bundle coerces values itself, with
    messages that name the column, so every entry point (pyfunc, ``mlflow models predict``, our CLI) accepts
    the same inputs and gives the same predictions.

    Images are one float32 tensor (N, C, H, W); sequences are long-format rows (the series and time columns,
    then the features) and come back one prediction per series, its id first.
    """
    examples = bundle.examples
    if examples.arrays:
        inputs = MlflowSchema([TensorSpec(np.dtype("float32"), (-1, *bundle.schema.image_shape))])
    else:
        inputs = MlflowSchema([ColSpec(AnyType(), name) for name in bundle.input_features])
    outputs = [ColSpec("string", bundle.schema.sequence_id)] if examples.by_series else []
    if bundle.task == "regression":
        outputs.append(ColSpec("double", "prediction"))
    else:
        kind = pd.api.types.infer_dtype(bundle.classes)
        label = "long" if kind == "integer" else "double" if kind == "floating" else "string"
        outputs += [ColSpec(label, "prediction")] + [ColSpec("double", f"proba_{c}") for c in bundle.classes]
    return ModelSignature(inputs=inputs, outputs=MlflowSchema(outputs))


def requirements() -> list[str]:
    """Pinned versions of what the wrapper imports, taken from this environment (no slow inference)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "pandas", "numpy", "safetensors")]


def input_example(bundle: ModelBundle, raw: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
    """A small slice of raw input to store with the model: 5 rows, 2 images, or every row of 2 series."""
    examples = bundle.examples
    if examples.arrays:
        return np.asarray(raw[:2], dtype="float32")
    if examples.by_series:
        series = bundle.schema.sequence_id
        rows = raw.loc[raw[series].isin(pd.unique(raw[series])[:2])]
        example = bundle.schema.coerce(rows, "input example", skip=bundle.imputer.dropped_)
        return examples.with_ids(example, rows).reset_index(drop=True)
    return bundle.schema.coerce(raw.head(5), "input example", skip=bundle.imputer.dropped_)


def log_bundle(bundle: ModelBundle, bundle_dir: Path, example: pd.DataFrame | np.ndarray) -> mlflow.models.model.ModelInfo:
    """Log the bundle loaded from ``bundle_dir`` as a pyfunc model in the active run, with ``pipeline`` as its code."""
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
    """Load a registered version through MLflow's own loader, with a clear error when it is not there.

    MLflow would unpickle a model whose ``MLmodel`` names a cloudpickled python model (its default allows it);
    ours never are, so a version that asks for it has been tampered with and is refused before anything in
    it is unpickled. MLflow's own check of the model's requirements against this environment maps every
    installed distribution to its modules first (about a second here, more than predicting takes), so the
    loader's warnings are off and :func:`check_requirements` compares the pins instead.
    """
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(f"--model {uri}: {str(exc).splitlines()[0]}") from None
    for line in check_requirements(local, model.metadata):
        print(f"warning: {uri}: {line}", file=sys.stderr, flush=True)
    return model


def check_requirements(model_dir: Path, metadata: mlflow.models.Model) -> list[str]:
    """How this environment differs from the one the model at ``model_dir`` was logged in: each pinned package
    (``requirements.txt``) installed at another version or missing, and another Python minor version."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    path = model_dir / "requirements.txt"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, sep, pinned = line.strip().partition("==")
        if not sep:  # only exact pins are ours (requirements() writes nothing else)
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            found.append(f"logged with {name}=={pinned}, this environment has {installed or 'no ' + name}")
    logged = (metadata.flavors.get("python_function") or {}).get("python_version")
    here = ".".join(map(str, sys.version_info[:2]))
    if logged and ".".join(logged.split(".")[:2]) != here:
        found.append(f"logged with Python {logged}, this is Python {here}")
    return found


def predict(model: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame | np.ndarray, source: str) -> pd.DataFrame:
    """Predict raw input, turning a schema mismatch into one line that names the input and the columns."""
    schema = model.metadata.get_input_schema()
    if schema.is_tensor_spec():
        if isinstance(rows, pd.DataFrame):
            raise PipelineError(f"{source}: this model takes images (an .npz with an array 'x'), got a table")
        shape = tuple(schema.inputs[0].shape[1:])
        rows = np.asarray(rows)
        rows = rows[:, None] if rows.ndim == 3 and len(shape) == 3 else rows
        if rows.shape[1:] != shape:
            raise PipelineError(f"{source}: array 'x': expected images of shape (N, {', '.join(map(str, shape))}), "
                                f"got {rows.shape}")
        if not np.isfinite(rows).all():
            raise PipelineError(f"{source}: array 'x': expected finite pixel values, got NaN or +/-inf")
        rows = rows.astype("float32")
    else:
        if not isinstance(rows, pd.DataFrame):
            raise PipelineError(f"{source}: this model takes rows (CSV or Parquet), got an image array")
        expected = schema.input_names()
        missing = [name for name in expected if name not in rows.columns]
        if missing:
            raise PipelineError(f"{source}: missing input column(s) {missing}; expected {expected}")
    try:
        return model.predict(rows)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(f"{source}: {str(exc).splitlines()[-1]}") from None
    except PipelineError as exc:  # raised inside the wrapper, which cannot know the file name
        raise PipelineError(str(exc).replace(MODEL_INPUT, source, 1)) from None


def model_version(client: MlflowClient, name: str, version: str) -> mlflow.entities.model_registry.ModelVersion:
    """Version ``version`` (a number or an alias) of registered model ``name``, or a clear error."""
    try:
        if version.isdigit():
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, version)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"model {name!r}: no version or alias {version!r} in the registry") from None


def set_alias(client: MlflowClient, name: str, version: str, alias: str) -> None:
    """Point ``alias`` at ``version`` of ``name``."""
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"model {name!r}: version {version!r} not found in the registry") from None
    client.set_registered_model_alias(name, alias, version)
