"""The model bundle: the network and the fitted cleaning and scaling state, travelling together.

A bundle folder holds ``weights.safetensors``, ``net.json`` (the architecture spec), ``schema.json``,
``imputer.json`` and ``encoder.json``. Nothing in it is a pickle; loading executes no stored code. Given raw
rows exactly as ingest saw them, it returns class predictions and probabilities, or regression predictions
in the target's own units.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import PipelineError
from pipeline.io import read_json, write_json
from pipeline.nets import build_net
from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler, target_encoder_from_dict
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.schema import Schema

WEIGHTS = "weights.safetensors"


def write_bundle(
    folder: Path, spec: dict, state_dict: dict[str, torch.Tensor], raw_dir: Path, clean_dir: Path, scaled_dir: Path
) -> None:
    """Write a bundle: the weights and spec, plus copies of the fitted state the data stages wrote."""
    folder = Path(folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, folder / WEIGHTS)
    write_json(folder / "net.json", spec)
    shutil.copyfile(Path(raw_dir) / "schema.json", folder / "schema.json")
    shutil.copyfile(Path(clean_dir) / "imputer.json", folder / "imputer.json")
    shutil.copyfile(Path(scaled_dir) / "encoder.json", folder / "encoder.json")


class ModelBundle:
    """A loaded bundle, ready to predict from raw rows."""

    def __init__(
        self,
        schema: Schema,
        imputer: Imputer,
        features: FeatureEncoder,
        target: LabelEncoder | TargetScaler,
        net: torch.nn.Module,
    ) -> None:
        self.schema = schema
        self.imputer = imputer
        self.features = features
        self.target = target
        self.net = net.eval()

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Load a bundle folder; weights go through safetensors, so no code is ever unpickled.

        Raises:
            PipelineError: If a file is missing or corrupt, or the weights do not fit the spec.
        """
        folder = Path(folder)
        encoders = read_json(folder / "encoder.json")
        net = build_net(read_json(folder / "net.json"))
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise PipelineError(f"{weights}: file not found")
        try:
            state = load_file(weights)
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise PipelineError(f"{weights}: expected a safetensors file, got an unreadable one ({exc})") from None
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise PipelineError(f"{weights}: weights do not match net.json ({str(exc).splitlines()[0]})") from None
        return cls(
            Schema.from_dict(read_json(folder / "schema.json")),
            Imputer.from_dict(read_json(folder / "imputer.json")),
            FeatureEncoder.from_dict(encoders["features"]),
            target_encoder_from_dict(encoders["target"]),
            net,
        )

    @property
    def input_features(self) -> list[str]:
        """The raw columns a row must have: ingest's features less those clean dropped."""
        return [name for name in self.schema.feature_names if name not in self.imputer.dropped_]

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.schema.task

    @property
    def classes(self) -> list:
        """Class labels in the order of the probability columns (classification only)."""
        return list(self.target.classes_)

    def encode(self, frame: pd.DataFrame, source: str = "input") -> np.ndarray:
        """Raw rows -> the float32 feature matrix the network was trained on."""
        features = self.schema.coerce(frame, source, skip=self.imputer.dropped_)
        return self.features.transform(self.imputer.transform(features))

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Network logits (N, K) for encoded features (N, F)."""
        return self.net(torch.from_numpy(x)).numpy()

    def predict(self, frame: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """Predicted label and one ``proba_<class>`` column per class (or the predicted value), indexed like ``frame``."""
        return self.predictions(self.logits(self.encode(frame, source)), frame.index)

    def predictions(self, logits: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """Network outputs (N, K) as :meth:`predict` reports them: labels and probabilities, or values in units."""
        if self.task == "regression":
            return pd.DataFrame({"prediction": self.target.inverse(logits[:, 0])}, index=index)
        proba = torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype("float64")
        out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in self.classes], index=index)
        out.insert(0, "prediction", np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)])
        return out
