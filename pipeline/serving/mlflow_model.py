"""The MLflow pyfunc model, logged as code (MLflow's models-from-code), so loading it unpickles nothing.

MLflow executes this file to obtain the model object; ``load_context`` then reads the bundle folder logged
as the ``bundle`` artifact (safetensors weights and JSON state).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class BundleModel(PythonModel):
    """Raw input in (rows, long-format sequence rows, or an image array), predicted label and class
    probabilities (or the predicted value) out."""

    def load_context(self, context: PythonModelContext) -> None:
        from pipeline.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    # Image models receive an np.ndarray here. The hint stays a plain DataFrame because MLflow reads it: a
    # DataFrame or ndarray hint means "the signature validates", while a union (or no hint) prints a warning on
    # every load. The bundle checks the input itself, with messages that name the column or the shape.
    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if not self.bundle.examples.arrays:  # images come as an array, the rest as a table
            model_input = pd.DataFrame(model_input)
        return self.bundle.predict(model_input, source="model input").reset_index(drop=True)


mlflow.models.set_model(BundleModel())
