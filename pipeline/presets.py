"""Presets: settings measured on each bundled dataset, kept in ``presets.yaml`` as dotted params.yaml keys.

A preset is applied the DVC way, as ``dvc exp run -S key=value ...``, so the run is an experiment DVC and MLflow
both record, and ``params.yaml`` stays the one file training reads.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pipeline.config import parse_params, read_raw_params, read_yaml
from pipeline.errors import PipelineError

DEFAULT_PRESETS = Path("presets.yaml")


def load_presets(path: Path = DEFAULT_PRESETS) -> dict[str, dict[str, Any]]:
    """Read ``presets.yaml``: preset name -> {dotted params key: value}."""
    presets = read_yaml(path, "a presets file")
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise PipelineError(f"{path}: expected a mapping of preset name -> {{dotted.key: value}}")
    return presets


def overlay(params: dict[str, Any], overrides: dict[str, Any], source: str = "presets.yaml") -> dict[str, Any]:
    """A copy of raw ``params`` with each dotted key of ``overrides`` set; a key params.yaml lacks is refused."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise PipelineError(f"{source}: {dotted}: expected a key that params.yaml has")
        node[leaf] = value
    return out


def dvc_set_args(overrides: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run``; DVC reads each value as YAML, so lists go as JSON."""
    args: list[str] = []
    for key, value in overrides.items():
        args += ["-S", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return args


def preset(name: str, params_path: Path, presets_path: Path = DEFAULT_PRESETS) -> dict[str, Any]:
    """The overrides of preset ``name``, checked to give valid params over ``params_path``."""
    presets = load_presets(presets_path)
    if name not in presets:
        raise PipelineError(f"{presets_path}: preset {name!r}: expected one of {sorted(presets)}")
    raw = read_raw_params(params_path)
    parse_params(overlay(raw, presets[name], f"{presets_path}: {name}"), f"{params_path} with preset {name!r}")
    return presets[name]
