"""Stage scale: encode categoricals, scale numerics and encode labels, all learned from the train split.

Tables become float32 feature columns plus the encoded target. Sequences stay in long format (the series id,
then the features, scaled per feature over all train time steps); ``encoder.json`` records the longest train
series: the steps a feed-forward net takes, and the fewest a batch is padded to for nets of any length. Images
are scaled per channel into ``<split>.npy`` beside a table holding the encoded target.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pipeline.config import Params, ScaleConfig, load_params
from pipeline.errors import run_main
from pipeline.io import (
    atomic_dir, read_npy, read_parquet, read_state, write_json, write_npy, write_parquet, write_parquet_chunks,
)
from pipeline.modality import for_schema
from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler, target_encoder
from pipeline.preprocess.encoders import Encoders
from pipeline.preprocess.image import ImageScaler
from pipeline.preprocess.impute import Imputer
from pipeline.preprocess.schema import Schema
from pipeline.stages.common import SPLITS, read_schema, stage_args

CHUNK_ROWS = 65_536  # rows encoded and written at a time: the dense one-hot output is the widest table there is


def fit_encoders(
    train: pd.DataFrame, numeric: list[str], categorical: list[str], config: ScaleConfig, schema: Schema
) -> Encoders:
    """Fit the feature and target encoders of a table or of long-format sequences on the train split.

    Args:
        train: The cleaned train split.
        numeric: Numeric feature columns after clean (kept numerics and missing-value indicators).
        categorical: Categorical feature columns after clean.
        config: The ``scale`` params.
        schema: The ingested schema: the target, the task (class indices, or a target standardised on train)
            and, for sequences, the series column.

    Returns:
        The fitted steps; for sequences also the series column and the longest train series.
    """
    features = FeatureEncoder(config.method, config.encoding).fit(train, numeric, categorical)
    modality = for_schema(schema)
    labels = target_encoder(schema.task).fit(modality.labels(train))
    return Encoders(features, labels, modality.steps(train))


def encode(frame: pd.DataFrame, encoders: Encoders, target: str) -> pd.DataFrame:
    """One split (or a slice of one) through fitted encoders: for sequences the series id first, then the
    float32 feature columns (``feature_names_out_``), then the encoded target."""
    features = encoders.features
    encoded = pd.DataFrame(features.transform(frame), columns=features.feature_names_out_, copy=False)
    if encoders.sequence is not None:
        series = encoders.sequence["series"]
        encoded.insert(0, series, frame[series].to_numpy())
    encoded[target] = encoders.target.transform(frame[target])
    return encoded


def encode_chunks(
    frame: pd.DataFrame, encoders: Encoders, target: str, rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """:func:`encode` ``rows`` rows at a time (one empty slice for an empty frame).

    The dense encoded output (one-hot columns, upsampled rows) is the largest thing the data stages hold:
    encoded and written a slice at a time, only its input is ever whole in memory.
    """
    for start in range(0, max(len(frame), 1), rows):
        yield encode(frame.iloc[start : start + rows], encoders, target)


def _scale_images(params: Params, clean: Path, out: Path, schema: Schema) -> str:
    """Scale the cleaned images per channel into ``out``; returns what was scaled, for the summary."""
    train = read_npy(clean / "train.npy")
    scaler = ImageScaler(params.scale.method).fit(train)
    del train
    labels = target_encoder(schema.task).fit(read_parquet(clean / "train.parquet")[schema.target])
    with atomic_dir(out) as tmp:
        for name in SPLITS:
            table = read_parquet(clean / f"{name}.parquet")
            write_npy(tmp / f"{name}.npy", scaler.transform(read_npy(clean / f"{name}.npy"), f"{name} images"))
            write_parquet(tmp / f"{name}.parquet", pd.DataFrame({schema.target: labels.transform(table[schema.target])}))
        write_json(tmp / "encoder.json", Encoders(scaler, labels, None).to_dict())
    return _described(f"images {' x '.join(map(str, scaler.shape_))} ({params.scale.method}, per channel)", labels)


def _scale_table(params: Params, clean: Path, out: Path, schema: Schema) -> str:
    """Encode the cleaned table (or long-format sequences) into ``out``; returns what was encoded."""
    imputer = read_state(clean / "imputer.json", Imputer.from_dict)
    train = read_parquet(clean / "train.parquet")
    encoders = fit_encoders(train, imputer.numeric_out_, imputer.categorical_out_, params.scale, schema)
    with atomic_dir(out) as tmp:
        write_parquet_chunks(tmp / "train.parquet", encode_chunks(train, encoders, schema.target))
        del train
        for name in ("val", "test"):  # each read only while it is written
            rows = read_parquet(clean / f"{name}.parquet")
            write_parquet_chunks(tmp / f"{name}.parquet", encode_chunks(rows, encoders, schema.target))
            del rows
        write_json(tmp / "encoder.json", encoders.to_dict())
    n = len(encoders.features.feature_names_out_)
    what = f"{n} feature{'' if n == 1 else 's'} ({params.scale.method}, {params.scale.encoding})"
    if encoders.sequence:
        what += f" per step, series padded to at least {encoders.sequence['length']} steps (the longest train series)"
    return _described(what, encoders.target)


def _described(what: str, labels: LabelEncoder | TargetScaler) -> str:
    """``what`` was scaled, then the encoded target: its classes, or the statistics it was standardised with."""
    target = f"classes {labels.classes_}" if isinstance(labels, LabelEncoder) else (
        f"target standardised (mean {labels.center_:.4g}, std {labels.scale_:.4g})")
    return f"{what}, {target}"


def scale_folder(params: Params, raw: Path, clean: Path, out: Path) -> str:
    """Scale the clean folder ``clean`` into ``out`` (written atomically) as the stage does, without printing.

    The search and cross-validation commands call this in-process, once per data configuration.

    Returns:
        What was scaled and how the target was encoded: the text the stage prints after ``scale: ``.
    """
    schema = read_schema(raw)
    if for_schema(schema).arrays:
        return _scale_images(params, Path(clean), Path(out), schema)
    return _scale_table(params, Path(clean), Path(out), schema)


def main() -> None:
    """Scale ``--clean`` into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "out")
    params = load_params(args.params)
    print(f"scale: {scale_folder(params, args.raw, args.clean, args.out)}")


if __name__ == "__main__":
    run_main(main, "scale")
