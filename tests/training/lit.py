"""Build a :class:`LitModel` in a test from the repository's train section with a few settings changed."""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.config import TrainConfig
from pipeline.training.module import LitModel
from tests.factories import build_params


def train_config(**train: Any) -> TrainConfig:
    """params.yaml's ``train`` section, validated, with ``train`` set on it (a dict value updates that subsection)
    and the ``auto`` sizes a module needs fixed: no weight decay and one epoch unless given."""
    return build_params(train={"weight_decay": 0.0, "max_epochs": 1, **train}).train


def lit_model(net: nn.Module, *, task: str = "classification", rows_per_step: int = 32, modality: str = "tabular",
              class_weight: list[float] | None = None, val_offsets: list[float] | None = None,
              **train: Any) -> LitModel:
    """A module training ``net`` with :func:`train_config` ``(**train)``."""
    return LitModel(net=net, cfg=train_config(**train), task=task, rows_per_step=rows_per_step, modality=modality,
                    class_weight=class_weight, val_offsets=val_offsets)
