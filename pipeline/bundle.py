"""The model bundle: the network and the fitted cleaning and scaling state, travelling together.

A bundle folder holds ``weights.safetensors``, ``net.json`` (the architecture spec), ``schema.json``,
``imputer.json``, ``encoder.json``, ``decision.json`` (how outputs become probabilities and labels; see
:mod:`pipeline.decision`) and ``inference.json`` (how many examples go through the network at once:
``train.eval_chunk``, see :mod:`pipeline.nets.chunks`). Nothing in it is a pickle; loading executes no stored
code. Given raw input exactly as ingest saw it (rows of a table; long-format rows of sequences; an image
array), it returns class predictions and probabilities, or regression predictions in the target's own units: one
per row, per series or per image.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from pipeline.decision import Decision
from pipeline.errors import PipelineError
from pipeline.modality import Modality, for_schema
from pipeline.io import read_state, write_json, write_safetensors
from pipeline.nets import FIXED_LENGTH, build_net, net_kind
from pipeline.nets.chunks import chunked_forward
from pipeline.preprocess import sequence as seq
from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler
from pipeline.preprocess.encoders import Encoders
from pipeline.preprocess.image import ImageScaler
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.schema import Schema, as_category

WEIGHTS = "weights.safetensors"
DECISION = "decision.json"
INFERENCE = "inference.json"


def write_bundle(
    folder: Path, spec: dict, state_dict: dict[str, torch.Tensor], raw_dir: Path, clean_dir: Path, scaled_dir: Path,
    decision: Decision, *, chunk: int,
) -> None:
    """Write a bundle: the weights, spec, decision rule and ``chunk`` (most examples per forward pass), plus copies
    of the fitted state the data stages wrote."""
    folder = Path(folder)
    write_safetensors(folder / WEIGHTS, {k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    write_json(folder / "net.json", spec)
    write_json(folder / DECISION, decision.to_dict())
    write_json(folder / INFERENCE, {"chunk": int(chunk)})
    shutil.copyfile(Path(raw_dir) / "schema.json", folder / "schema.json")
    shutil.copyfile(Path(clean_dir) / "imputer.json", folder / "imputer.json")
    shutil.copyfile(Path(scaled_dir) / "encoder.json", folder / "encoder.json")


class ModelBundle:
    """A loaded bundle, ready to predict from raw rows."""

    def __init__(
        self,
        schema: Schema,
        imputer: Imputer,
        features: FeatureEncoder | ImageScaler,
        target: LabelEncoder | TargetScaler,
        net: torch.nn.Module,
        sequence: dict | None = None,
        kind: str = "fnn",
        decision: Decision | None = None,
        chunk: int | None = None,
    ) -> None:
        self.schema = schema
        self.imputer = imputer
        self.features = features
        self.target = target
        self.net = net.eval()
        self.sequence = sequence  # {"series": id column, "length": the longest train series} for sequences
        self.kind = kind  # the network's architecture (an ensemble's members'): fnn takes a fixed number of steps
        self.decision = decision or Decision()
        self.chunk = chunk  # most examples per forward pass; None: all at once

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Load a bundle folder; weights go through safetensors, so no code is ever unpickled.

        Raises:
            PipelineError: If a file is missing or corrupt, or the weights do not fit the spec.
        """
        folder = Path(folder)
        encoders = read_state(folder / "encoder.json", Encoders.from_dict)
        kind, net = read_state(folder / "net.json", lambda spec: (net_kind(spec), build_net(spec)))
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
            read_state(folder / "schema.json", Schema.from_dict),
            read_state(folder / "imputer.json", Imputer.from_dict),
            encoders.features,
            encoders.target,
            net,
            encoders.sequence,
            kind,
            # bundles written before decision.json existed predicted by plain argmax
            read_state(folder / DECISION, Decision.from_dict) if (folder / DECISION).is_file() else Decision(),
            # bundles written before inference.json existed ran every row in one forward pass
            read_state(folder / INFERENCE, _chunk) if (folder / INFERENCE).is_file() else None,
        )

    @property
    def modality(self) -> str:
        """``tabular``, ``image`` or ``sequence``."""
        return self.schema.modality

    @property
    def examples(self) -> Modality:
        """What one example is (a row, an image or a series) and how its labels and inputs go
        (:mod:`pipeline.modality`)."""
        return for_schema(self.schema)

    @property
    def input_features(self) -> list[str]:
        """The raw columns a row must have: ingest's features less those clean dropped (and, for sequences, the
        series and time columns first). Images have none: their input is an array."""
        features = [name for name in self.schema.feature_names if name not in self.imputer.dropped_]
        return [*self.examples.id_columns, *features]

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.schema.task

    @property
    def classes(self) -> list:
        """Class labels in the order of the probability columns (classification only)."""
        return list(self.target.classes_)

    def prepare(self, inputs: pd.DataFrame | np.ndarray, source: str = "input") -> tuple[np.ndarray, pd.Index]:
        """Raw input -> the float32 network input and the index its predictions take.

        Tables: rows -> (N, F), indexed like the rows. Images: an array (N, H, W) or (N, C, H, W) -> scaled
        (N, C, H, W), indexed 0..N-1. Sequences: long-format rows -> (N, T, F + 1) padded with a mask channel
        to the longest train series (or the input's longest, for a net of any length), indexed by series id in
        order of first appearance.

        Raises:
            PipelineError: Naming ``source`` and the column, shape or value that does not fit.
        """
        examples = self.examples
        if examples.arrays:
            if isinstance(inputs, pd.DataFrame):
                raise PipelineError(f"{source}: expected an image array N x C x H x W, got a table")
            return self.features.transform(inputs, source), pd.RangeIndex(len(inputs))
        if not isinstance(inputs, pd.DataFrame):
            raise PipelineError(f"{source}: expected rows with columns {self.input_features}, got an array")
        if examples.by_series:
            return self._prepare_sequences(inputs, source)
        features = self.schema.coerce(inputs, source, skip=self.imputer.dropped_)
        return self.features.transform(self.imputer.transform(features)), inputs.index

    def _prepare_sequences(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, pd.Index]:
        series, time = self.schema.sequence_id, self.schema.sequence_time
        absent = [name for name in (series, time) if name not in frame.columns]
        if absent:
            raise PipelineError(f"{source}: missing sequence column(s) {absent}; expected {self.input_features}")
        ids = as_category(frame[series])  # the text form ingest gave ids; a blank id is a missing one
        if ids.isna().any() or frame[time].isna().any():
            raise PipelineError(f"{source}: columns {[series, time]}: expected a series id and a time on every row")
        features = self.schema.coerce(frame, source, skip=self.imputer.dropped_)
        features.insert(0, time, seq.as_time(frame[time], time, source))
        features.insert(0, series, ids)
        repeated = features.duplicated([series, time])
        if repeated.any():
            row = features.loc[repeated].iloc[0]
            raise PipelineError(f"{source}: series {row[series]!r} has time {row[time]} on more than one row; "
                                "expected one row per (series, time step)")
        ordered = seq.order(features, series, time)
        encoded = pd.DataFrame(self.features.transform(self.imputer.transform(ordered)), copy=False)
        encoded.insert(0, series, ordered[series].to_numpy())
        columns = [c for c in encoded.columns if c != series]
        # a recurrent or convolutional net takes any length; a feed-forward one exactly the longest train series
        ids, x = seq.pad(encoded, series, columns, self.sequence["length"], source, fixed=self.fixed_length)
        return x, ids

    @property
    def fixed_length(self) -> bool:
        """Whether the network takes a fixed number of steps per series (a feed-forward net), so a series
        longer than every train series is refused rather than padded to."""
        return self.kind in FIXED_LENGTH

    def encode(self, inputs: pd.DataFrame | np.ndarray, source: str = "input") -> np.ndarray:
        """Raw input -> the float32 network input (see :meth:`prepare`)."""
        return self.prepare(inputs, source)[0]

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Network logits (N, K) for encoded features (N, F), :attr:`chunk` examples per forward pass."""
        return self.outputs(self.net, x)

    @torch.inference_mode()
    def outputs(self, net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
        """``net``'s outputs (N, K) for encoded features (N, F) (the bundle's network, or one restart of it),
        :attr:`chunk` examples per forward pass."""
        return chunked_forward(net, torch.from_numpy(x), self.chunk).numpy()

    def predict(self, inputs: pd.DataFrame | np.ndarray, source: str = "input") -> pd.DataFrame:
        """Predicted label and one ``proba_<class>`` column per class (or the predicted value), indexed as
        :meth:`prepare` says; sequences also carry their series id as the first column."""
        x, index = self.prepare(inputs, source)
        return self.predictions(self.logits(x), index)

    def predictions(self, logits: np.ndarray, index: pd.Index, decide: bool = True) -> pd.DataFrame:
        """Network outputs (N, K) as :meth:`predict` reports them: labels and probabilities, or values in units.

        Args:
            logits: The network's outputs.
            index: The index the predictions take.
            decide: Apply the bundle's decision rule (the prior correction, when it has one); evaluate passes
                False to report the network's own probabilities beside the corrected ones.
        """
        if self.task == "regression":
            out = pd.DataFrame({"prediction": self.target.inverse(logits[:, 0])}, index=index)
        else:
            decided = self.decision.apply(logits) if decide else logits
            proba = torch.softmax(torch.from_numpy(decided), dim=1).numpy().astype("float64")
            out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in self.classes], index=index)
            # the labels' own dtype (int64 digits stay numbers, names stay text), so metrics compare like with like
            out.insert(0, "prediction", pd.Series(self.classes).to_numpy()[proba.argmax(axis=1)])
        if self.examples.by_series:
            out.insert(0, self.schema.sequence_id, index.to_numpy())
        return out


def _chunk(state: dict) -> int:
    """``inference.json``'s chunk: a positive whole number of examples."""
    chunk = state["chunk"]
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive whole number of examples, got {chunk!r}")
    return chunk
