"""Bad params through the real stage processes: every section of params.yaml with an unknown key, a wrong type, an
out-of-range value and contradictory settings.

Each case ends with a non-zero exit and one line that names the key, the value and what is allowed; the stage
that refuses writes nothing (its outputs and everything downstream absent or unchanged, no temporary folders),
``dvc.lock`` gains no entry for it, and no MLflow run is left RUNNING.

Most mistakes are caught when ``params.yaml`` is read, so those cases run the first stage's command, exactly as
``dvc.yaml`` gives it, in a fresh project (about a second each). A few go through ``dvc repro``: some of the same
mistakes (from a fresh project, and from one whose data stages already ran, where the first stage DVC reruns must
refuse and leave every earlier output as it was), and the contradictions only a later stage can see, once ingest
has inferred the task (``data.task: auto``), read the data, or looked for a GPU.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from tests.project import ROOT, dvc, make_project, run, set_params

pytestmark = pytest.mark.slow

STAGES = ("ingest", "split", "clean", "scale", "train", "evaluate")
DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
INGEST = DVC_STAGES["ingest"]["cmd"].split()  # python -m pipeline.stages.ingest --out data/raw
OUTPUT_ROOTS = ("data", "models", "reports")


@dataclass(frozen=True)
class Case:
    """One bad ``params.yaml``.

    Attributes:
        overrides: Dotted keys (``a__b``) set with :func:`tests.project.set_params`; a key that is not in
            params.yaml is added, which is how unknown keys are made.
        expect: Fragments the one error line must hold: the key, the value, what is allowed.
        stage: The stage that must refuse.
        mode: ``cmd`` runs the first stage command in a fresh project; ``repro`` runs ``dvc repro`` in a fresh
            project; ``rerun`` runs ``dvc repro`` in a project whose data stages (ingest to scale) already ran.
        edit: A change to the text of params.yaml, for what overrides cannot write (a YAML syntax error).
    """

    overrides: dict[str, Any]
    expect: tuple[str, ...]
    stage: str = "ingest"
    mode: str = "cmd"
    edit: Callable[[str], str] | None = field(default=None, compare=False)


P = "params.yaml: "
DIABETES = {"data__source": "diabetes", "data__target": "progression"}
CASES: dict[str, Case] = {
    # --- seed (a top-level scalar: its "unknown key" is a misspelt top-level key) ---
    "seed-unknown-key": Case({"seeds": 7}, (P + "seeds: unknown key; expected one of: seed, data, split, clean, scale, "
                                                "model, train, evaluate, tracking",)),
    "seed-wrong-type": Case({"seed": "42"}, (P + "seed = '42': expected a valid integer",)),
    "seed-out-of-range": Case({"seed": -1}, (P + "seed = -1: expected greater than or equal to 0",)),
    "seed-too-large": Case({"seed": 2**32}, (P + "seed = 4294967296: expected less than or equal to 4294967295",)),
    # --- data ---
    "data-unknown-key": Case({"data__colour": "red"},
                             (P + "data.colour: unknown key; expected one of: source, target, task, drop, numeric, "
                                  "duplicates, sequence",)),
    "data-wrong-type": Case({"data__drop": "island"}, (P + "data.drop = 'island': expected a list",)),
    "data-unknown-task": Case({"data__task": "clustering"},
                              (P + "data.task = 'clustering': expected 'auto', 'classification' or 'regression'",)),
    "data-source-escapes": Case({"data__source": "inputs/../../etc/passwd.csv"},
                                (P + "data.source = 'inputs/../../etc/passwd.csv': expected one of ('penguins',",
                                 "file under inputs/")),
    "data-unknown-duplicates": Case({"data__duplicates": "dedupe"},
                                    (P + "data.duplicates = 'dedupe': expected 'keep', 'group' or 'drop'",)),
    "data-sequence-half-set": Case({"data__sequence__id": "island"},
                                   (P + "data.sequence: id = 'island', time = None: expected both columns named",)),
    "data-regression-on-text-labels": Case(
        {"data__task": "regression", "evaluate__primary_metric": "rmse"},
        ("data.task = 'regression': column 'species' in penguins: expected numbers, got str values",)),
    "data-numeric-column-holds-text": Case(
        {"data__numeric": ["island"]},
        ("penguins: column 'island' (data.numeric): expected numbers, got 'Torgersen' in data row 1",)),
    # --- split ---
    "split-unknown-key": Case({"split__folds": 5},
                              (P + "split.folds: unknown key; expected one of: val, test, method, time_column",)),
    "split-wrong-type": Case({"split__val": "0.1"}, (P + "split.val = '0.1': expected a valid number",)),
    "split-out-of-range": Case({"split__test": 0}, (P + "split.test = 0: expected greater than 0",)),
    "split-fractions-sum-past-1": Case({"split__val": 0.6, "split__test": 0.5},
                                       (P + "split.val + split.test = 1.1: expected a sum below 1",)),
    "split-time-without-column": Case({"split__method": "time"},
                                      (P + "split.method = 'time': expected split.time_column to name the column",)),
    "split-time-column-not-in-data": Case(
        {"split__method": "time", "split__time_column": "when"},
        ("split.time_column = 'when': column not found in the ingested data",), stage="split", mode="rerun"),
    # --- clean ---
    "clean-unknown-key": Case({"clean__strategy": "mean"},
                              (P + "clean.strategy: unknown key; expected one of: numeric,",)),
    "clean-wrong-type": Case({"clean__drop_rows": "yes"}, (P + "clean.drop_rows = 'yes': expected a valid boolean",)),
    "clean-out-of-range": Case({"clean__max_missing": 1.5},
                               (P + "clean.max_missing = 1.5: expected less than or equal to 1",)),
    "clean-time-fill-on-rows": Case({"clean__numeric": "ffill"},
                                    (P + "clean.numeric = 'ffill' with tabular data: expected one of ('mean',",)),
    "clean-class-weight-regression": Case(
        {**DIABETES, "data__task": "regression", "evaluate__primary_metric": "rmse",
         "clean__imbalance": "class_weight"},
        (P + "clean.imbalance = 'class_weight' with a regression task: expected 'auto' or 'none'",)),
    # with data.task: auto the task is known once ingest has read the target: ingest refuses, before it writes
    "clean-class-weight-inferred-regression": Case(
        {**DIABETES, "clean__imbalance": "class_weight"},
        (P + "clean.imbalance = 'class_weight' with a regression task: expected 'auto' or 'none'",), stage="ingest",
        mode="repro"),
    # refused when params.yaml is read, so clean never meets it
    "clean-smote-on-sequences": Case(
        {"data__source": "gunpoint", "data__target": "label", "data__sequence": {"id": "series", "time": "step"},
         "clean__imbalance": "smote"},
        (P + "clean.imbalance = 'smote' with sequence data: expected one of ('none', 'downsample', 'upsample', "
             "'class_weight')",)),
    # --- scale ---
    "scale-unknown-key": Case({"scale__with_mean": True},
                              (P + "scale.with_mean: unknown key; expected one of: method, encoding",)),
    "scale-wrong-type": Case({"scale__encoding": 1}, (P + "scale.encoding = 1: expected 'onehot' or 'ordinal'",)),
    "scale-unknown-method": Case({"scale__method": "zscore"},
                                 (P + "scale.method = 'zscore': expected 'standard', 'minmax', 'robust' or 'none'",)),
    # --- model ---
    "model-unknown-key": Case({"model__layers": 3}, (P + "model.layers: unknown key; expected one of: kind, hidden,",)),
    "model-unknown-nested-key": Case({"model__cnn__filters": 8},
                                     (P + "model.cnn.filters: unknown key; expected one of: channels, kernel,",)),
    "model-wrong-type": Case({"model__hidden": "64"}, (P + "model.hidden = '64': expected a list",)),
    "model-out-of-range": Case({"model__dropout": 1.0}, (P + "model.dropout = 1.0: expected less than 1",)),
    "model-negative-layer": Case({"model__hidden": [64, -1]}, (P + "model.hidden.1 = -1: expected greater than 0",)),
    "model-cnn-on-rows": Case({"model__kind": "cnn"},
                              (P + "model.kind = 'cnn' with tabular data: expected 'fnn'",), mode="repro"),
    "model-batch-norm-one-row-steps": Case({"model__norm": "batch", "train__update": "stochastic"},
                                           (P + "model.norm = 'batch' with train.update = 'stochastic': expected "
                                                "'layer' or 'none'",)),
    # --- train ---
    "train-unknown-key": Case({"train__epochs": 10},
                              (P + "train.epochs: unknown key; expected one of: optimizer, lr,",), mode="repro"),
    "train-unknown-nested-key": Case({"train__schedule__warmup": 5},
                                     (P + "train.schedule.warmup: unknown key; expected one of: kind, step_size,",)),
    "train-wrong-type": Case({"train__max_epochs": 10.5}, (P + "train.max_epochs = 10.5: expected a valid integer",)),
    "train-out-of-range": Case({"train__lr": -1}, (P + "train.lr = -1: expected greater than 0",), stage="train",
                               mode="rerun"),
    "train-bf16-on-cpu": Case({"train__precision": "bf16-mixed", "train__accelerator": "cpu"},
                              (P + "train.precision = 'bf16-mixed' with train.accelerator = 'cpu': "
                                   "expected '32-true'",)),
    "train-momentum-with-adam": Case({"train__momentum": 0.9},
                                     (P + "train.momentum = 0.9 with train.optimizer = 'adam': expected momentum 0",)),
    "train-ensemble-of-one": Case({"train__ensemble": True},
                                  (P + "train.ensemble = true with train.restarts = 1: expected train.restarts "
                                       "of at least 2",)),
    "train-monitor-of-other-task": Case(
        {"train__early_stopping__monitor": "val/mae"},
        (P + "train.early_stopping.monitor = 'val/mae' with a classification task: expected 'val/loss' or 'val/acc'",),
        stage="train", mode="rerun"),
    # --- evaluate ---
    "evaluate-unknown-key": Case({"evaluate__metric": "accuracy"},
                                 (P + "evaluate.metric: unknown key; expected one of: primary_metric, baselines,",)),
    "evaluate-wrong-type": Case({"evaluate__baseline_rows": "all"},
                                (P + "evaluate.baseline_rows = 'all': expected a valid integer",)),
    "evaluate-out-of-range": Case({"evaluate__baseline_rows": 0},
                                  (P + "evaluate.baseline_rows = 0: expected greater than 0",)),
    "evaluate-unknown-baseline": Case({"evaluate__baselines": ["svm"]},
                                      (P + "evaluate.baselines.0 = 'svm': expected 'dummy', 'linear', 'forest' or 'nearest'",)),
    # a key from before it moved to train: one line naming where it lives now
    "evaluate-ensemble-moved": Case({"evaluate__ensemble": True},
                                    (P + "evaluate.ensemble: moved to train.ensemble (set it there)",)),
    "evaluate-metric-of-other-task": Case(
        {"data__task": "classification", "evaluate__primary_metric": "rmse"},
        (P + "evaluate.primary_metric = 'rmse' with a classification task: expected 'auto' or one of ('accuracy', "
             "'macro_f1')",)),
    "evaluate-metric-of-inferred-task": Case(
        {"evaluate__primary_metric": "rmse"},
        (P + "evaluate.primary_metric = 'rmse' with a classification task: expected 'auto' or one of ('accuracy', "
             "'macro_f1')",), stage="ingest", mode="repro"),
    # the data stages already ran (DVC reruns none of them for an evaluate key): train is the first to refuse
    "evaluate-metric-of-inferred-task-rerun": Case(
        {"evaluate__primary_metric": "rmse"},
        (P + "evaluate.primary_metric = 'rmse' with a classification task: expected 'auto' or one of ('accuracy', "
             "'macro_f1')",), stage="train", mode="rerun"),
    # --- tracking ---
    "tracking-unknown-key": Case({"tracking__uri": "http://127.0.0.1:5000"},
                                 (P + "tracking.uri: unknown key; expected one of: experiment, model_name, "
                                      "register_model",)),
    "tracking-wrong-type": Case({"tracking__register_model": "no"},
                                (P + "tracking.register_model = 'no': expected a valid boolean",)),
    "tracking-bad-model-name": Case({"tracking__model_name": "bad name!"},
                                    (P + "tracking.model_name = 'bad name!': expected text matching the pattern",)),
    "tracking-empty-experiment": Case({"tracking__experiment": ""},
                                      (P + "tracking.experiment = '': expected at least 1 character",)),
    # --- the file as a whole ---
    "yaml-syntax-error": Case({}, (P + "expected valid YAML, got a syntax error",),
                              edit=lambda text: text.replace("seed: 42", "seed: [42", 1)),
    "section-not-a-mapping": Case({"train": None}, (P + "train = None: expected a valid dictionary",), mode="repro"),
}
if not torch.cuda.is_available():  # with train.accelerator auto, only the train stage can see there is no GPU
    CASES["train-bf16-without-gpu"] = Case(
        {"train__precision": "bf16-mixed"},
        ("train.precision = 'bf16-mixed' with no CUDA device with bfloat16 support: expected '32-true'",),
        stage="train", mode="rerun")


def _files(project: Path) -> dict[str, str]:
    """md5 of every file under data/, models/, reports/ and mlruns/, by path relative to the project."""
    out = {}
    for top in (*OUTPUT_ROOTS, "mlruns"):
        for path in sorted((project / top).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(project))] = hashlib.md5(path.read_bytes()).hexdigest()
    return out


def _lock(project: Path) -> dict[str, Any]:
    lock = project / "dvc.lock"
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}


def _owned(stage: str) -> list[str]:
    """What ``stage`` and every stage after it write (train's checkpoints too, which DVC does not track)."""
    later = STAGES[STAGES.index(stage):]
    paths = [next(iter(o)) if isinstance(o, dict) else o for s in later for o in DVC_STAGES[s].get("outs", [])]
    paths += [m if isinstance(m, str) else next(iter(m)) for s in later for m in DVC_STAGES[s].get("metrics", [])]
    return paths + (["models/checkpoints"] if "train" in later else [])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project, committed to git, with nothing run."""
    return make_project(tmp_path_factory.mktemp("bad-params") / "fresh")


@pytest.fixture(scope="module")
def data_done(fresh: Path) -> Path:
    """The project after ``dvc repro scale``: every data stage ran and is locked."""
    project = fresh.parent / "data-done"
    shutil.copytree(fresh, project, symlinks=True)
    dvc(project, "repro", "scale")
    return project


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_params_stop_the_stage_with_one_line_and_write_nothing(
    case: Case, fresh: Path, data_done: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(data_done if case.mode == "rerun" else fresh, project, symlinks=True)
    set_params(project, **case.overrides)
    if case.edit is not None:
        (project / "params.yaml").write_text(case.edit((project / "params.yaml").read_text()))
    files, lock = _files(project), _lock(project)

    if case.mode == "cmd":
        done = run(INGEST, project, check=False)
        errors = done.stderr.strip().splitlines()
        assert len(errors) == 1, done.stderr  # one line and nothing else: no traceback, no warning
    else:
        done = dvc(project, "repro", check=False)
        errors = [line for line in done.stderr.splitlines() if line.startswith(f"{case.stage}: error: ")]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        ran = [line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage '")]
        assert ran and ran[-1] == case.stage, done.stdout  # the stage that refused is the last one started
    assert done.returncode != 0
    (line,) = errors
    assert line.startswith(f"{case.stage}: error: "), line
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"

    # nothing written by the refusing stage or after it (DVC itself removes a stage's old outputs before rerunning
    # it: they stay in its cache); what earlier stages wrote is theirs to keep
    owned = _owned(case.stage)
    mine = lambda path: any(path == o or path.startswith(o.rstrip("/") + "/") for o in owned)  # noqa: E731
    after = _files(project)
    written = {p for p, h in after.items() if mine(p) and files.get(p) != h}
    assert not written, f"{case.stage} refused but these appeared or changed: {sorted(written)}"
    leftovers = [p for top in OUTPUT_ROOTS for p in (project / top).rglob("*") if ".tmp-" in p.name
                 or p.name.endswith(".partial")]
    assert not leftovers, leftovers
    if case.mode == "cmd":
        assert not any((project / top).exists() for top in OUTPUT_ROOTS)
        assert not (project / "dvc.lock").exists()
    after_lock = _lock(project)
    for stage in STAGES[STAGES.index(case.stage):]:
        assert after_lock.get(stage) == lock.get(stage), f"dvc.lock entry for {stage} changed"
    assert case.stage not in after_lock or case.mode == "rerun" and case.stage in lock

    store = project / "mlflow.db"
    if store.exists():
        client = MlflowClient(f"sqlite:///{store}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        statuses = {r.info.status for r in client.search_runs(experiments)} if experiments else set()
        assert statuses <= {"FAILED"}, statuses
