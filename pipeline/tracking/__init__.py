"""MLflow plumbing shared by train, evaluate and the CLI: the store, runs, lineage, redaction, environment tags.

One concern a module: :mod:`~pipeline.tracking.store` (where the store is, its file lock, experiments),
:mod:`~pipeline.tracking.runs` (a run that always ends, ``runs cleanup`` of runs left RUNNING, and per-epoch
metrics written in batches),
:mod:`~pipeline.tracking.lineage` (DVC's data hashes, the git commit and diff, the run name),
:mod:`~pipeline.tracking.redaction` (secrets masked in logged text) and :mod:`~pipeline.tracking.environment`
(Python, OS, CPU, GPU, package versions). Every name callers use is importable from ``pipeline.tracking``
itself; ``file_md5`` lives with the other file helpers in :mod:`pipeline.io` and is re-exported here.
"""

from __future__ import annotations

from pipeline.io import file_md5
from pipeline.tracking.environment import cpu_model, environment_tags, gpu_driver, pip_freeze
from pipeline.tracking.lineage import (
    DIFF_EXCLUDES, dvc_md5, dvc_tags, git_diff, git_tags, output_tags, run_name, upstream_stages,
)
from pipeline.tracking.redaction import SECRET_MIN_LENGTH, SECRET_NAME, URL_PASSWORD, redact, secrets
from pipeline.tracking.runs import FLUSH_SPACING, MetricsBuffer, cleanup_runs, tracked_run
from pipeline.tracking.store import (
    BUSY_TIMEOUT_S,
    check_server,
    configure,
    experiment_id,
    store_lock,
    tracking_uri,
    workspace,
)

__all__ = [
    "BUSY_TIMEOUT_S", "DIFF_EXCLUDES", "FLUSH_SPACING", "MetricsBuffer", "SECRET_MIN_LENGTH", "SECRET_NAME", "URL_PASSWORD", "check_server",
    "cleanup_runs", "configure", "cpu_model", "dvc_md5", "dvc_tags", "environment_tags", "experiment_id", "file_md5",
    "git_diff", "git_tags", "gpu_driver", "output_tags", "pip_freeze", "redact", "run_name", "secrets", "store_lock",
    "tracked_run", "tracking_uri", "upstream_stages", "workspace",
]
