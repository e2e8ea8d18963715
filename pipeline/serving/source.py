"""The registered version a fine-tuning starts from (``train.init_from``): which one it is, and its weights.

An alias moves; a fine-tuning must record, and DVC must see, the version it actually used. :func:`resolve` turns
``3``, ``champion``, ``models:/name/3`` or ``models:/name@champion`` into one version, once; :func:`read` fetches
only that version's architecture spec and safetensors weights (never a pickle) from wherever its artifacts live.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.config.training import ALIAS, SOURCE_URI
from pipeline.errors import PipelineError
from pipeline.training.transfer import Parent

KEY = "train.init_from"
URI = re.compile(rf"^{SOURCE_URI}$")
# where a version's MLmodel file names its bundle: the pyfunc flavour's artifact "bundle" (see registry.log_bundle)
BUNDLE_KEYS = ("flavors", "python_function", "artifacts", "bundle", "path")
# what the registry answers for a missing model or version (RESOURCE_DOES_NOT_EXIST) and alias (INVALID_PARAMETER_VALUE)
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class Source:
    """One registered version, resolved.

    Attributes:
        name: The registered model's name.
        version: Its version number, as the registry writes it (``"3"``).
        run_id: The run that trained it.
        requested: What ``train.init_from`` said (``champion``), for messages.
    """

    name: str
    version: str
    run_id: str
    requested: str

    @property
    def uri(self) -> str:
        """The version's registry URI, by number: what the run records and what DVC sees."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "requested": self.requested}


def parse(requested: str | int, default_name: str) -> tuple[str, str | None, str | None]:
    """``(name, version, alias)`` for a ``train.init_from`` value; exactly one of version and alias is set.

    Raises:
        PipelineError: If the value is none of a version number, an alias or a ``models:/`` URI.
    """
    text = str(requested).strip()
    if text.isdigit():
        return default_name, text, None
    match = URI.match(text)
    if match:
        return match["name"], match["version"], match["alias"]
    if re.fullmatch(ALIAS, text):
        return default_name, None, text
    raise PipelineError(f"{KEY} = {text!r}: expected a version number, an alias, models:/<name>/<version> or "
                        "models:/<name>@<alias>")


def resolve(client: MlflowClient, requested: str | int, default_name: str) -> Source:
    """The one version ``requested`` names now (an alias is read once, here).

    Args:
        client: A client on the project's tracking store and registry.
        requested: The ``train.init_from`` value.
        default_name: The project's own registered model, for a bare number or alias.

    Raises:
        PipelineError: If the name, version or alias does not exist, or the store does not answer.
    """
    name, version, alias = parse(requested, default_name)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise PipelineError(_missing(requested, f"no registered model {name!r}", exc)) from None
    try:
        found = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"model {name!r} has no version {version}" if version else f"model {name!r} has no alias {alias!r}"
        raise PipelineError(_missing(requested, what, exc)) from None
    return Source(name, str(found.version), str(found.run_id), str(requested))


def _missing(requested: str | int, what: str, exc: MlflowException) -> str:
    """One line: the registry's answer when it is a plain 'not found', else the store's own first line."""
    if getattr(exc, "error_code", "") in NOT_FOUND:
        return f"{KEY} = {requested!r}: {what} in the registry; expected a registered version (see: models show)"
    return f"{KEY} = {requested!r}: the tracking store did not answer ({str(exc).splitlines()[0]})"


def read(source: Source, into: Path | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The architecture spec and the weights of ``source``, downloaded from the store (``into``, or a temporary
    folder removed afterwards) and read through YAML, JSON and safetensors only: the version's ``MLmodel`` says
    where its bundle lies, and only that folder is fetched.

    Raises:
        PipelineError: If the version's artifacts are unreachable or hold no bundle.
    """
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="init-from-") as scratch:
        folder = Path(into or scratch)
        local = _download(source, f"{source.uri}/{_bundle_path(source, folder / 'meta')}", folder / "bundle")
        spec_path, weights = local / "net.json", local / "weights.safetensors"
        if not spec_path.is_file() or not weights.is_file():
            raise PipelineError(f"{KEY} = {source.requested!r}: {source.uri} holds no net.json and "
                                "weights.safetensors; expected a version this pipeline registered")
        try:
            return json.loads(spec_path.read_text()), load_file(weights)
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise PipelineError(f"{KEY} = {source.requested!r}: {source.uri}'s weights are unreadable ({exc})") \
                from None


def _bundle_path(source: Source, folder: Path) -> str:
    """The bundle's path inside the version's artifacts, as its ``MLmodel`` file gives it."""
    import yaml

    meta = _download(source, f"{source.uri}/MLmodel", folder)
    try:
        node: Any = yaml.safe_load(meta.read_text())
        for key in BUNDLE_KEYS:
            node = node[key]
    except (yaml.YAMLError, KeyError, TypeError):
        node = None
    if not isinstance(node, str) or not node or ".." in Path(node).parts or Path(node).is_absolute():
        raise PipelineError(f"{KEY} = {source.requested!r}: {source.uri}'s MLmodel names no model bundle; expected a "
                            "version this pipeline registered")
    return node


def _download(source: Source, uri: str, folder: Path) -> Path:
    """One artifact (file or folder) of ``source`` into ``folder``; its local path."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))
    except (MlflowException, OSError) as exc:
        raise PipelineError(f"{KEY} = {source.requested!r}: could not read {uri} "
                            f"({' '.join(str(exc).split())[:300]})") from None


def fetch(client: MlflowClient, requested: str | int, default_name: str) -> tuple[Source, Parent]:
    """The version ``requested`` names now, and its network: :func:`resolve`, then :func:`read`.

    Raises:
        PipelineError: As :func:`resolve` and :func:`read` do.
    """
    source = resolve(client, requested, default_name)
    spec, state = read(source)
    return source, Parent(source.uri, spec, state)


@dataclass(frozen=True)
class Ancestor:
    """One version in a fine-tuned model's lineage, as its child's run recorded it (``parent.*`` tags).

    Attributes:
        name: The registered model's name.
        version: Its version number.
        run_id: The run that trained it.
        found: Whether that run is still in the store (when not, the chain cannot be followed further).
    """

    name: str
    version: str
    run_id: str
    found: bool = True

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def ancestry(client: MlflowClient, run_id: str, limit: int = 100) -> list[Ancestor]:
    """The versions the model of run ``run_id`` was fine-tuned from, its parent first, back to the first one
    trained from random weights (whose run records no parent).

    Each step follows the run id the child recorded, not the registry: a parent version deleted since, or an alias
    moved since, does not change what the child was trained from. A chain longer than ``limit`` (which only a
    store edited by hand could hold: a parent exists before its child) is cut there.
    """
    chain: list[Ancestor] = []
    tags = client.get_run(run_id).data.tags
    while "parent.run_id" in tags and len(chain) < limit:
        ancestor = Ancestor(tags.get("parent.name", "?"), tags.get("parent.version", "?"), tags["parent.run_id"])
        try:
            tags = client.get_run(ancestor.run_id).data.tags
        except MlflowException:
            chain.append(Ancestor(ancestor.name, ancestor.version, ancestor.run_id, found=False))
            break
        chain.append(ancestor)
    return chain


def chain_line(uri: str, chain: list[Ancestor]) -> str:
    """The lineage of version ``uri`` as ``models show`` prints it:
    ``models:/b/2 <- models:/a/1 <- random initial weights``."""
    steps = [uri] + [a.uri if a.found else f"{a.uri} (run {a.run_id} is not in this store: what it started from "
                     "is unknown)" for a in chain]
    if not chain or chain[-1].found:
        steps.append("random initial weights")
    return " <- ".join(steps)
