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
    """Raw rows in, predicted label and class probabilities out."""

    def load_context(self, context: PythonModelContext) -> None:
        from pipeline.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.bundle.predict(pd.DataFrame(model_input), source="model input").reset_index(drop=True)


mlflow.models.set_model(BundleModel())
