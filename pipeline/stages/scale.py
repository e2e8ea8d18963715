"""Stage scale: encode categoricals, scale numerics and encode labels, all learned from the train split."""

from __future__ import annotations

import pandas as pd

from pipeline.config import ScaleConfig, load_params
from pipeline.errors import run_main
from pipeline.io import atomic_dir, read_json, read_parquet, write_json, write_parquet
from pipeline.preprocess.encode import FeatureEncoder, LabelEncoder, TargetScaler, target_encoder
from pipeline.preprocess.impute import Imputer
from pipeline.stages.common import read_schema, stage_args


def scale(
    splits: dict[str, pd.DataFrame],
    numeric: list[str],
    categorical: list[str],
    target: str,
    config: ScaleConfig,
    task: str = "classification",
) -> tuple[dict[str, pd.DataFrame], FeatureEncoder, LabelEncoder | TargetScaler]:
    """Fit the feature and target encoders on train and turn every split into float32 features + target.

    Args:
        splits: The cleaned splits.
        numeric: Numeric feature columns after clean (kept numerics and missing-value indicators).
        categorical: Categorical feature columns after clean.
        target: The label column.
        config: The ``scale`` params.
        task: ``classification`` (target as class indices) or ``regression`` (target standardised on train).

    Returns:
        Frames whose columns are ``encoder.feature_names_out_`` then the encoded target, and both fitted
        encoders.
    """
    features = FeatureEncoder(config.method, config.encoding).fit(splits["train"], numeric, categorical)
    labels = target_encoder(task).fit(splits["train"][target])
    return {name: encode(frame, features, labels, target) for name, frame in splits.items()}, features, labels


def encode(
    frame: pd.DataFrame, features: FeatureEncoder, labels: LabelEncoder | TargetScaler, target: str
) -> pd.DataFrame:
    """One split through fitted encoders: float32 feature columns, then the encoded target."""
    encoded = pd.DataFrame(features.transform(frame), columns=features.feature_names_out_, copy=False)
    encoded[target] = labels.transform(frame[target])
    return encoded


def main() -> None:
    """Scale ``--clean`` into ``--out``."""
    args = stage_args(__doc__.splitlines()[0], "raw", "clean", "out")
    params = load_params(args.params)
    imputer = Imputer.from_dict(read_json(args.clean / "imputer.json"))
    schema = read_schema(args.raw)
    train = read_parquet(args.clean / "train.parquet")
    features = FeatureEncoder(params.scale.method, params.scale.encoding).fit(
        train, imputer.numeric_out_, imputer.categorical_out_
    )
    labels = target_encoder(schema.task).fit(train[schema.target])
    with atomic_dir(args.out) as out:
        # one split in memory at a time: the dense encoded output is the largest thing the data stages hold
        write_parquet(out / "train.parquet", encode(train, features, labels, schema.target))
        del train
        for name in ("val", "test"):
            write_parquet(out / f"{name}.parquet", encode(read_parquet(args.clean / f"{name}.parquet"), features,
                                                          labels, schema.target))
        write_json(out / "encoder.json", {"features": features.to_dict(), "target": labels.to_dict()})
    target = f"classes {labels.classes_}" if isinstance(labels, LabelEncoder) else (
        f"target standardised (mean {labels.center_:.4g}, std {labels.scale_:.4g})")
    print(f"scale: {len(features.feature_names_out_)} features ({params.scale.method}, {params.scale.encoding}), {target}")


if __name__ == "__main__":
    run_main(main, "scale")
