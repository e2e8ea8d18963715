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

    # model_input is left unannotated on purpose: MLflow reads that annotation as a schema and warns that a
    # DataFrame-or-array union is not one; the logged signature says what the model takes.
    def predict(self, context: PythonModelContext, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:  # noqa: ANN001
        if self.bundle.modality != "image":
            model_input = pd.DataFrame(model_input)
        return self.bundle.predict(model_input, source="model input").reset_index(drop=True)


mlflow.models.set_model(BundleModel())
