"""The params.yaml schema: what parses, what is refused and how the refusal reads."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from pipeline.config import flatten, load_params, parse_params
from pipeline.errors import PipelineError

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"
DELETE = object()


def _with(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the value at ``path`` replaced (or removed when ``value is DELETE``)."""
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def test_default_params_file_parses_to_its_values(default_params: dict[str, Any]) -> None:
    params = parse_params(default_params)
    assert params.seed == 42
    assert params.data.source == "penguins"
    assert params.data.target == "species"
    assert (params.split.val, params.split.test) == (0.15, 0.2)
    assert params.clean.imbalance == "auto"
    assert params.model.hidden == (64, 32)
    assert params.train.optimizer == "adam"
    assert params.train.early_stopping.monitor == "val/loss"
    assert params.train.early_stopping.direction == "min"
    assert params.tracking.register_model is True


def test_load_params_reads_the_repository_file(default_params: dict[str, Any]) -> None:
    assert load_params(REPO_PARAMS) == parse_params(default_params)


def test_parsed_params_are_frozen(default_params: dict[str, Any]) -> None:
    params = parse_params(default_params)
    with pytest.raises(pydantic.ValidationError):
        params.seed = 7
    with pytest.raises(pydantic.ValidationError):
        params.train.lr = 1.0


def test_sgd_with_momentum_is_accepted(default_params: dict[str, Any]) -> None:
    doc = _with(_with(default_params, ("train", "optimizer"), "sgd"), ("train", "momentum"), 0.9)
    params = parse_params(doc)
    assert (params.train.optimizer, params.train.momentum) == ("sgd", 0.9)


def test_val_acc_monitor_is_maximised(default_params: dict[str, Any]) -> None:
    doc = _with(default_params, ("train", "early_stopping", "monitor"), "val/acc")
    assert parse_params(doc).train.early_stopping.direction == "max"


BAD_VALUES = [
    # (id, path, value, fragments the one-line message must contain)
    ("unknown-top-level-key", ("bogus",), 1, ["bogus: unknown key", "seed, data, split"]),
    ("unknown-nested-key", ("train", "lr_decay"), 0.5, ["train.lr_decay: unknown key", "optimizer, lr, momentum"]),
    ("unknown-deep-key", ("train", "early_stopping", "patienc"), 3, ["train.early_stopping.patienc: unknown key", "patience"]),
    ("string-for-float", ("train", "lr"), "0.01", ["train.lr = '0.01'", "number"]),
    ("bool-for-int", ("train", "batch_size"), True, ["train.batch_size = True", "integer"]),
    ("unknown-last-batch", ("train", "last_batch"), "pad", ["train.last_batch = 'pad'", "'keep', 'even' or 'drop'"]),
    ("float-for-int", ("train", "max_epochs"), 10.5, ["train.max_epochs = 10.5", "integer"]),
    ("text-for-number-or-auto", ("train", "weight_decay"), "much", ["train.weight_decay = 'much'", "a valid number or 'auto'"]),
    ("negative-weight-decay", ("train", "weight_decay"), -0.1, ["train.weight_decay = -0.1", "greater than or equal to 0"]),
    ("int-for-bool", ("tracking", "register_model"), 1, ["tracking.register_model = 1", "boolean"]),
    ("lr-zero", ("train", "lr"), 0.0, ["train.lr = 0.0", "greater than 0"]),
    ("lr-negative", ("train", "lr"), -0.1, ["train.lr = -0.1", "greater than 0"]),
    ("dropout-one", ("model", "dropout"), 1.0, ["model.dropout = 1.0", "less than 1"]),
    ("split-sum-one", ("split",), {"val": 0.5, "test": 0.5, "method": "random", "time_column": None}, ["split.val + split.test = 1", "below 1"]),
    ("split-sum-above-one", ("split",), {"val": 0.6, "test": 0.45, "method": "random", "time_column": None}, ["split.val + split.test = 1.05", "below 1"]),
    ("split-test-one", ("split", "test"), 1.0, ["split.test = 1.0", "less than 1"]),
    ("unknown-activation", ("model", "activation"), "swish", ["model.activation = 'swish'", "'relu'", "'gelu'", "'tanh'"]),
    ("nesterov-without-momentum", ("train", "optimizer"), "nesterov", ["train.optimizer = 'nesterov' with train.momentum = 0: expected a momentum above 0"]),
    ("unknown-init", ("model", "init"), "he", ["model.init = 'he'", "'kaiming_normal'"]),
    ("unknown-update", ("train", "update"), "online", ["train.update = 'online'", "'stochastic'"]),
    ("hidden-has-zero", ("model", "hidden"), [64, 0], ["model.hidden.1 = 0", "greater than 0"]),
    ("missing-seed", ("seed",), DELETE, ["seed: missing key"]),
    ("missing-nested-key", ("train", "lr"), DELETE, ["train.lr: missing key"]),
    ("negative-seed", ("seed",), -1, ["seed = -1"]),
    ("momentum-with-adam", ("train", "momentum"), 0.9, ["train.momentum = 0.9", "train.optimizer = 'adam'", "'sgd'"]),
    ("model-name-bad-chars", ("tracking", "model_name"), "my model!", ["tracking.model_name = 'my model!'", "pattern"]),
    ("unknown-source", ("data", "source"), "iris", ["data.source = 'iris'", "'penguins'"]),
    ("unknown-duplicates", ("data", "duplicates"), "dedupe", ["data.duplicates = 'dedupe'", "'keep'", "'group'", "'drop'"]),
    ("unknown-monitor", ("train", "early_stopping", "monitor"), "val/f1", ["train.early_stopping.monitor = 'val/f1'"]),
    ("unknown-scale-method", ("scale", "method"), "zscore", ["scale.method = 'zscore'", "'standard'"]),
    ("section-not-mapping", ("train",), None, ["train = None", "dictionary"]),
    ("unknown-imbalance", ("clean", "imbalance"), "oversample", ["clean.imbalance = 'oversample'", "'smote'", "'class_weight'"]),
    ("unknown-numeric-fill", ("clean", "numeric"), "zero", ["clean.numeric = 'zero'", "'knn'", "'interpolate'"]),
    ("unknown-split-method", ("split", "method"), "shuffle", ["split.method = 'shuffle'", "'random' or 'time'"]),
    ("cnn-on-a-table", ("model", "kind"), "cnn", ["model.kind = 'cnn' with tabular data: expected 'fnn'"]),
    ("unknown-rnn-cell", ("model", "rnn", "cell"), "transformer", ["model.rnn.cell = 'transformer'", "'lstm'"]),
    ("no-conv-blocks", ("model", "cnn", "channels"), [], ["model.cnn.channels", "at least 1"]),
    ("ffill-on-a-table", ("clean", "numeric"), "ffill",
     ["clean.numeric = 'ffill' with tabular data", "(filling along time needs data.sequence)"]),
    ("time-split-without-column", ("split", "method"), "time",
     ["split.method = 'time': expected split.time_column to name the column to order by"]),
    ("sequence-id-without-time", ("data", "sequence"), {"id": "device", "time": None},
     ["data.sequence: id = 'device', time = None: expected both columns named"]),
    ("gunpoint-without-sequence-columns", ("data", "source"), "gunpoint",
     ["data.source = 'gunpoint' holds long-format sequences: expected data.sequence.id: series"]),
    ("npz-outside-inputs", ("data", "source"), "scans.npz", ["data.source = 'scans.npz'", "a .csv/.parquet/.npz file under inputs/"]),
    ("unknown-norm", ("model", "norm"), "group", ["model.norm = 'group'", "'batch' or 'layer'"]),
    ("loss-maximised", ("train", "early_stopping", "mode"), "max",
     ["train.early_stopping.mode = 'max' with monitor 'val/loss': expected 'auto' or 'min'"]),
    ("unknown-stopping-mode", ("train", "early_stopping", "mode"), "down", ["train.early_stopping.mode = 'down'"]),
    ("flip-on-a-table", ("train", "augment", "flip"), "horizontal",
     ["train.augment flip = 'horizontal', shift = 0 with tabular data: expected flip 'none' and shift 0"]),
    ("negative-shift", ("train", "augment", "shift"), -1, ["train.augment.shift = -1"]),
    ("negative-noise", ("train", "augment", "noise"), -0.1, ["train.augment.noise = -0.1"]),
    ("spawned-workers", ("train", "strategy"), "ddp_spawn",
     ["train.strategy = 'ddp_spawn': expected 'auto' or 'ddp'", "best epoch's weights"]),
    ("sharded-params", ("train", "strategy"), "fsdp", ["train.strategy = 'fsdp': expected 'auto' or 'ddp'"]),
    ("unknown-strategy", ("train", "strategy"), "horovod", ["train.strategy = 'horovod'", "'ddp'"]),
    ("no-nodes", ("train", "num_nodes"), 0, ["train.num_nodes = 0", "greater than 0"]),
    ("precision-as-number", ("train", "precision"), 16, ["train.precision = 16", "'32-true' or 'bf16-mixed'"]),
    ("negative-checkpoint-every", ("train", "checkpoint_every"), -1, ["train.checkpoint_every = -1"]),
    ("lr-find-as-text", ("train", "lr_find"), "yes", ["train.lr_find = 'yes'", "boolean"]),
    ("no-eval-chunk", ("train", "eval_chunk"), 0, ["train.eval_chunk = 0", "greater than 0"]),
    ("unknown-baseline", ("evaluate", "baselines"), ["dummy", "svm"], ["evaluate.baselines.1 = 'svm'", "'forest'"]),
    ("no-restarts", ("train", "restarts"), 0, ["train.restarts = 0", "greater than or equal to 1"]),
    ("ensemble-of-one", ("train", "ensemble"), True,
     ["train.ensemble = true with train.restarts = 1: expected train.restarts of at least 2"]),
    ("ensemble-at-its-old-place", ("evaluate", "ensemble"), False,
     ["evaluate.ensemble: moved to train.ensemble (set it there)"]),
    ("init-from-a-path", ("train", "init_from"), "models/model",
     ["train.init_from = 'models/model': expected null, a version number (1, 2, ...), an alias, "
      "models:/<name>/<version> or models:/<name>@<alias>"]),
    ("init-from-version-zero", ("train", "init_from"), 0, ["train.init_from = 0: expected null, a version number"]),
    ("init-from-a-bool", ("train", "init_from"), True, ["train.init_from = True: expected null, a version number"]),
    ("init-from-a-version-uri-without-number", ("train", "init_from"), "models:/digits-cnn/latest",
     ["train.init_from = 'models:/digits-cnn/latest'"]),
    ("freeze-without-a-source", ("train", "freeze"), "encoder",
     ["train.freeze = 'encoder' with train.init_from = null: expected 'none'"]),
    ("unfreeze-without-a-source", ("train", "unfreeze_epoch"), 3,
     ["train.unfreeze_epoch = 3 with train.init_from = null: expected null"]),
    ("loaded-rate-without-a-source", ("train", "loaded_lr_factor"), 0.1,
     ["train.loaded_lr_factor = 0.1 with train.init_from = null: expected 1.0"]),
    ("loaded-rate-above-one", ("train", "loaded_lr_factor"), 2.0, ["train.loaded_lr_factor = 2.0", "less than or equal to 1"]),
    ("unknown-freeze", ("train", "freeze"), "all",
     ["train.freeze = 'all': expected 'none' or 'encoder', or a list of layer-name prefixes"]),
    ("freeze-an-empty-list", ("train", "freeze"), [], ["train.freeze = []: expected 'none' or 'encoder', or a list"]),
    ("unfreeze-at-epoch-zero", ("train", "unfreeze_epoch"), 0, ["train.unfreeze_epoch = 0", "greater than 0"]),
]


@pytest.mark.parametrize(
    ("path", "value", "fragments"), [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES]
)
def test_bad_value_is_refused_with_one_line_naming_key_and_value(
    default_params: dict[str, Any], path: tuple[str, ...], value: Any, fragments: list[str]
) -> None:
    with pytest.raises(PipelineError) as caught:
        parse_params(_with(default_params, path, value), "my-params.yaml")
    message = str(caught.value)
    assert message.startswith("my-params.yaml: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("value", [True, False])
def test_a_file_from_before_the_move_is_told_where_the_key_went(default_params: dict[str, Any], value: bool) -> None:
    old = _with(_with(default_params, ("train", "ensemble"), DELETE), ("evaluate", "ensemble"), value)
    with pytest.raises(PipelineError) as caught:
        parse_params(old)
    # the whole message: not also "train.ensemble: missing key" or "(and 1 more)"
    assert str(caught.value) == "params.yaml: evaluate.ensemble: moved to train.ensemble (set it there)"


@pytest.mark.parametrize(("document", "type_name"), [(None, "NoneType"), ([1, 2], "list"), ("seed: 1", "str"), (3, "int")])
def test_non_mapping_document_is_refused(document: Any, type_name: str) -> None:
    with pytest.raises(PipelineError, match=rf"^params\.yaml: expected a mapping of sections, got {type_name}$"):
        parse_params(document)


def _finetuning(params: dict[str, Any], **train: Any) -> dict[str, Any]:
    for key, value in {"init_from": "champion", **train}.items():
        params = _with(params, ("train", key), value)
    return params


def test_a_finetuning_from_an_alias_with_gradual_unfreezing_is_accepted(default_params: dict[str, Any]) -> None:
    train = parse_params(_finetuning(default_params, freeze=["features.0.", "features.1."], unfreeze_epoch=5,
                                     loaded_lr_factor=0.1)).train
    assert (train.init_from, train.freeze, train.unfreeze_epoch, train.loaded_lr_factor) == \
        ("champion", ("features.0.", "features.1."), 5, 0.1)
    assert parse_params(_finetuning(default_params, init_from="models:/digits-cnn/3")).train.init_from == \
        "models:/digits-cnn/3"


@pytest.mark.parametrize(("train", "message"), [
    ({"unfreeze_epoch": 2}, "train.unfreeze_epoch = 2 with train.freeze = 'none': expected null (nothing is frozen "
                            "to release)"),
    ({"freeze": ["features.", ""]}, "train.freeze = ['features.', '']: expected 'none' or 'encoder', or a list of "
                                    "layer-name prefixes (e.g. [features.0.])"),
])
def test_a_finetuning_that_cannot_work_is_refused_in_one_line(default_params: dict[str, Any], train: dict[str, Any],
                                                               message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        parse_params(_finetuning(default_params, **train))
    assert str(caught.value) == f"params.yaml: {message}"


def test_several_problems_report_the_first_and_count_the_rest(default_params: dict[str, Any]) -> None:
    doc = _with(_with(default_params, ("seed",), "x"), ("train", "lr"), -1.0)
    with pytest.raises(PipelineError) as caught:
        parse_params(doc)
    assert str(caught.value) == "params.yaml: seed = 'x': expected a valid integer (and 1 more)"


def test_flatten_gives_dotted_keys_and_lists(default_params: dict[str, Any]) -> None:
    flat = flatten(parse_params(default_params))
    assert flat == {
        "seed": 42,
        "data.source": "penguins",
        "data.target": "species",
        "data.task": "auto",
        "data.drop": [],
        "data.numeric": [],
        "data.duplicates": "keep",
        "data.sequence.id": None,
        "data.sequence.time": None,
        "split.val": 0.15,
        "split.test": 0.2,
        "split.method": "random",
        "split.time_column": None,
        "clean.numeric": "median",
        "clean.categorical": "most_frequent",
        "clean.fill_value": 0.0,
        "clean.fill_category": "missing",
        "clean.max_missing": 1.0,
        "clean.drop_rows": False,
        "clean.indicators": False,
        "clean.knn_neighbors": 5,
        "clean.knn_reference_rows": 2000,
        "clean.imbalance": "auto",
        "clean.prior_correction": True,
        "clean.smote_neighbors": 5,
        "scale.method": "standard",
        "scale.encoding": "onehot",
        "model.kind": "fnn",
        "model.hidden": [64, 32],
        "model.activation": "relu",
        "model.init": "default",
        "model.bias": True,
        "model.norm": "none",
        "model.dropout": 0.1,
        "model.cnn.channels": [32, 64],
        "model.cnn.kernel": 3,
        "model.cnn.stride": 1,
        "model.cnn.padding": 1,
        "model.cnn.pool": "max",
        "model.cnn.batch_norm": True,
        "model.rnn.cell": "gru",
        "model.rnn.hidden_size": 64,
        "model.rnn.layers": 1,
        "model.rnn.bidirectional": False,
        "train.optimizer": "adam",
        "train.lr": 0.01,
        "train.momentum": 0.0,
        "train.weight_decay": "auto",
        "train.l1": 0.0,
        "train.schedule.kind": "none",
        "train.schedule.step_size": 30,
        "train.schedule.gamma": 0.1,
        "train.schedule.patience": 5,
        "train.schedule.warmup_epochs": 0,
        "train.gradient_clip.mode": "none",
        "train.gradient_clip.max": 1.0,
        "train.update": "mini_batch",
        "train.batch_size": 32,
        "train.last_batch": "keep",
        "train.label_smoothing": 0.0,
        "train.regression_loss": "mse",
        "train.max_epochs": "auto",
        "train.early_stopping.monitor": "val/loss",
        "train.early_stopping.mode": "auto",
        "train.early_stopping.patience": "auto",
        "train.early_stopping.min_delta": 0.0001,
        "train.augment.flip": "none",
        "train.augment.shift": 0,
        "train.augment.noise": 0.0,
        "train.lr_find": False,
        "train.restarts": 1,
        "train.ensemble": False,
        "train.checkpoint_every": "auto",
        "train.accelerator": "auto",
        "train.devices": 1,
        "train.num_nodes": 1,
        "train.strategy": "auto",
        "train.precision": "32-true",
        "train.cpu_threads": 1,
        "train.eval_chunk": 4096,
        "train.init_from": None,
        "train.freeze": "none",
        "train.unfreeze_epoch": None,
        "train.loaded_lr_factor": 1.0,
        "evaluate.primary_metric": "auto",
        "evaluate.baselines": ["dummy", "linear", "forest", "nearest"],
        "evaluate.baseline_rows": 20000,
        "tracking.experiment": "auto",
        "tracking.model_name": "auto",
        "tracking.register_model": True,
    }
    assert type(flat["model.hidden"]) is list


def test_auto_names_derive_from_source_and_model_kind(default_params: dict[str, Any]) -> None:
    params = parse_params(default_params)
    assert params.registered_model_name == "penguins-fnn"
    assert params.experiment_name == "penguins"


def test_explicit_names_are_used_verbatim(default_params: dict[str, Any]) -> None:
    doc = _with(default_params, ("tracking", "model_name"), "adelie_v2.1")
    doc = _with(doc, ("tracking", "experiment"), "bill-study")
    params = parse_params(doc)
    assert params.registered_model_name == "adelie_v2.1"
    assert params.experiment_name == "bill-study"


def test_auto_names_are_independent(default_params: dict[str, Any]) -> None:
    params = parse_params(_with(default_params, ("tracking", "experiment"), "bill-study"))
    assert params.experiment_name == "bill-study"
    assert params.registered_model_name == "penguins-fnn"


def test_load_params_on_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    assert str(caught.value) == f"{path}: file not found (expected a params file)"


def test_load_params_on_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 42\ntrain: [1, 2\n")
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: expected valid YAML")
    assert "\n" not in message


def test_load_params_on_empty_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(PipelineError, match="expected a mapping of sections, got NoneType") as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_load_params_on_schema_error_names_the_file(tmp_path: Path, default_params: dict[str, Any]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_with(default_params, ("train", "lr"), "0.01")))
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: train.lr = '0.01'")



CONTRADICTIONS = [
    # (id, changes, the message's expectation)
    ("batch-norm-with-one-row-steps", {("model", "norm"): "batch", ("train", "update"): "stochastic"},
     "model.norm = 'batch' with train.update = 'stochastic': expected 'layer' or 'none'"),
    ("bf16-on-cpu", {("train", "precision"): "bf16-mixed", ("train", "accelerator"): "cpu"},
     "train.precision = 'bf16-mixed' with train.accelerator = 'cpu': expected '32-true'"),
    ("shift-on-sequences", {("data", "source"): "gunpoint", ("data", "target"): "label",
                            ("data", "sequence"): {"id": "series", "time": "step"}, ("train", "augment", "shift"): 2},
     "train.augment flip = 'none', shift = 2 with sequence data: expected flip 'none' and shift 0"),
    ("one-row-steps-on-two-devices", {("train", "devices"): 2, ("train", "update"): "stochastic"},
     "train.update = 'stochastic' with 2 processes (train.devices x train.num_nodes): expected 'mini_batch'"),
    ("batch-smaller-than-the-processes", {("train", "devices"): 4, ("train", "num_nodes"): 2, ("train", "batch_size"): 4},
     "train.batch_size = 4 with 8 processes: expected at least 8"),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CONTRADICTIONS], ids=[c[0] for c in CONTRADICTIONS])
def test_contradictory_settings_are_refused(default_params: dict[str, Any], changes: dict, expected: str) -> None:
    doc = default_params
    for path, value in changes.items():
        doc = _with(doc, path, value)
    with pytest.raises(PipelineError) as caught:
        parse_params(doc)
    assert expected in str(caught.value)


def test_augmentation_and_batch_norm_are_accepted_where_they_fit(default_params: dict[str, Any]) -> None:
    doc = _with(_with(default_params, ("data", "source"), "digits"), ("data", "target"), "digit")
    doc = _with(doc, ("train", "augment"), {"flip": "both", "shift": 1, "noise": 0.05})
    doc = _with(doc, ("model", "norm"), "batch")
    params = parse_params(doc)
    assert params.train.augment.shift == 1 and params.model.norm == "batch"
    assert parse_params(_with(default_params, ("train", "augment", "noise"), 0.1)).train.augment.noise == 0.1


def test_scientific_notation_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "params.yaml").read_text().replace("lr: 0.01", "lr: 1e-3")
    assert "lr: 1e-3" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path).train.lr == 0.001


def test_unreadable_params_path_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        load_params(tmp_path)
    assert str(caught.value) == f"{tmp_path}: expected a params file, got a directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(PipelineError, match=f"^{binary}: expected a params file readable as UTF-8 text \\('utf-8'"):
        load_params(binary)


def test_settings_of_the_other_task_are_refused(default_params: dict[str, Any]) -> None:
    doc = _with(_with(default_params, ("data", "task"), "regression"), ("evaluate", "primary_metric"), "accuracy")
    with pytest.raises(PipelineError, match=r"evaluate.primary_metric = 'accuracy' with a regression task: expected 'auto' or one of \('mae'"):
        parse_params(doc)
    doc = _with(_with(default_params, ("data", "task"), "regression"), ("evaluate", "primary_metric"), "rmse")
    doc = _with(doc, ("train", "early_stopping", "monitor"), "val/acc")
    with pytest.raises(PipelineError, match="train.early_stopping.monitor = 'val/acc' with a regression task"):
        parse_params(doc)


def test_file_sources_name_the_experiment_and_model_after_the_file(default_params: dict[str, Any]) -> None:
    params = parse_params(_with(default_params, ("data", "source"), "inputs/my churn.parquet"))
    assert params.data.name == "my churn"
    assert params.experiment_name == "my churn"
    assert params.registered_model_name == "my-churn-fnn"  # registry names allow no spaces


def test_modality_follows_the_source_and_data_sequence(default_params: dict[str, Any]) -> None:
    assert parse_params(default_params).data.modality == "tabular"
    images = _with(_with(default_params, ("data", "source"), "inputs/scans.npz"), ("data", "target"), "y")
    assert parse_params(images).data.modality == "image"
    sequences = _with(default_params, ("data", "sequence"), {"id": "device", "time": "at"})
    assert parse_params(sequences).data.modality == "sequence"


def test_modality_and_kind_autos_settle_when_params_are_read(default_params: dict[str, Any]) -> None:
    table = parse_params(default_params)
    assert (table.model.kind, table.model.hidden, table.train.weight_decay) == ("fnn", (64, 32), "auto")
    sequences = parse_params(_with(default_params, ("data", "sequence"), {"id": "device", "time": "at"}))
    model = sequences.model
    assert (model.kind, model.hidden, model.cnn.kernel, model.cnn.padding, model.cnn.pool) == ("cnn", (), 7, 3, "none")
    assert sequences.train.weight_decay == 0.0  # a CNN's is 0, not sized by the rows
    assert sequences._settled["train.weight_decay"] == 0.0  # so ingest prints it
    rnn = parse_params(_with(_with(default_params, ("data", "sequence"), {"id": "d", "time": "t"}), ("model", "kind"), "rnn"))
    assert (rnn.model.hidden, rnn.train.weight_decay) == ((), 0.0)
    images = _with(_with(default_params, ("data", "source"), "digits"), ("data", "target"), "digit")
    assert parse_params(_with(images, ("train", "weight_decay"), 0.003)).train.weight_decay == 0.003  # set by hand


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({("data", "source"): "digits", ("split", "method"): "time"},
         "split.method = 'time' with image data: expected 'random'"),
        ({("data", "source"): "digits", ("data", "sequence"): {"id": "a", "time": "b"}},
         "data.sequence.id = 'a' with data.source = 'digits', an image source: expected data.sequence.id and"),
        ({("data", "sequence"): {"id": "a", "time": "b"}, ("clean", "imbalance"): "smote"},
         "clean.imbalance = 'smote' with sequence data: expected one of "
         "('none', 'downsample', 'upsample', 'class_weight')"),
    ],
    ids=["time-split-of-images", "images-with-sequence-columns", "smote-on-sequences"],
)
def test_settings_that_do_not_fit_the_modality_are_refused(
    default_params: dict[str, Any], changes: dict[tuple[str, ...], Any], fragment: str
) -> None:
    doc = default_params
    for path, value in changes.items():
        doc = _with(doc, path, value)
    with pytest.raises(PipelineError) as caught:
        parse_params(doc)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_auto_values_resolve_by_task_and_explicit_ones_stay(default_params: dict[str, Any]) -> None:
    from pipeline.config import require_task, resolved_autos

    params = parse_params(default_params)
    assert (params.evaluate.primary_metric, params.clean.imbalance) == ("auto", "auto")
    regression = require_task(params, "regression")
    assert (regression.evaluate.primary_metric, regression.clean.imbalance) == ("r2", "none")
    classification = require_task(params, "classification")
    assert (classification.evaluate.primary_metric, classification.clean.imbalance) == ("accuracy", "none")
    assert resolved_autos(params, "regression") == {"model.kind": "fnn", "model.hidden": [64, 32],
                                                    "evaluate.primary_metric": "r2", "clean.imbalance": "none"}
    explicit = parse_params(_with(default_params, ("evaluate", "primary_metric"), "macro_f1"))
    assert require_task(explicit, "classification").evaluate.primary_metric == "macro_f1"
    assert resolved_autos(explicit, "classification") == {"model.kind": "fnn", "model.hidden": [64, 32],
                                                          "clean.imbalance": "none"}


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("evaluate", "primary_metric", "accuracy", "evaluate.primary_metric = 'accuracy' with a regression task"),
    ("clean", "imbalance", "upsample", "clean.imbalance = 'upsample' with a regression task: expected 'auto' or 'none'"),
    ("clean", "imbalance", "class_weight", "clean.imbalance = 'class_weight' with a regression task"),
])
def test_an_explicit_choice_against_the_inferred_task_is_refused(default_params: dict[str, Any], section: str,
                                                                  key: str, value: str, message: str) -> None:
    from pipeline.config import require_task

    params = parse_params(_with(default_params, (section, key), value))  # task auto: accepted until it is known
    with pytest.raises(PipelineError, match=f"^params.yaml: {re.escape(message)}"):
        require_task(params, "regression")


def test_auto_epochs_and_patience_follow_optimizer_steps_and_set_values_stay(default_params: dict[str, Any]) -> None:
    from pipeline.config.auto import budget

    train = parse_params(default_params).train
    assert (train.max_epochs, train.early_stopping.patience) == ("auto", "auto")
    small = budget(train, 100)  # 4 steps of 32 rows an epoch: 1,000 epochs hold 4,000 steps
    assert (small.max_epochs, small.early_stopping.patience) == (1000, 100)
    large = budget(train, 100_000)  # 3,125 steps an epoch: the epoch floors decide
    assert (large.max_epochs, large.early_stopping.patience) == (200, 20)
    full = budget(train.model_copy(update={"update": "full_batch"}), 50)  # one step an epoch: capped
    assert (full.max_epochs, full.early_stopping.patience) == (4000, 400)
    set_by_hand = parse_params(_with(_with(default_params, ("train", "max_epochs"), 30),
                                     ("train", "early_stopping", "patience"), 5)).train
    kept = budget(set_by_hand, 100)
    assert (kept.max_epochs, kept.early_stopping.patience) == (30, 5)
    assert budget(set_by_hand.model_copy(update={"max_epochs": "auto"}), 10).max_epochs == 4000  # one short step


def test_auto_checkpoints_every_500_steps_and_at_least_ten_times_and_a_set_value_stays(
        default_params: dict[str, Any]) -> None:
    from pipeline.config.auto import budget

    train = parse_params(default_params).train
    assert train.checkpoint_every == "auto"
    assert budget(train, 100).checkpoint_every == 100  # 4 steps an epoch, 1,000 epochs: a tenth of them (not 125)
    assert budget(train, 223).checkpoint_every == 57  # penguins' train split: 7 steps, 572 epochs
    assert budget(train.model_copy(update={"max_epochs": 150}), 223).checkpoint_every == 15
    assert budget(train, 2_000).checkpoint_every == 8  # 63 steps an epoch: 500 steps' worth
    assert budget(train, 100_000).checkpoint_every == 1  # 3,125 steps an epoch: every epoch, as ever
    assert budget(train.model_copy(update={"max_epochs": 4}), 100).checkpoint_every == 1  # never 0 (none)
    for value in (0, 1, 7):
        kept = parse_params(_with(default_params, ("train", "checkpoint_every"), value)).train
        assert budget(kept, 100).checkpoint_every == value


def test_auto_weight_decay_is_one_over_train_rows_and_a_set_value_stays(default_params: dict[str, Any]) -> None:
    from pipeline.config.auto import budget

    train = parse_params(default_params).train
    assert train.weight_decay == "auto"
    assert budget(train, 100).weight_decay == pytest.approx(0.01)  # scikit-learn's C=1 penalty, per row
    assert budget(train, 10_000).weight_decay == pytest.approx(1e-4)
    for value in (0.0, 0.05):  # 0 is a choice (no penalty), not a missing value
        kept = parse_params(_with(default_params, ("train", "weight_decay"), value)).train
        assert budget(kept, 100).weight_decay == value


def test_a_choice_outside_its_type_is_refused_with_the_types_values() -> None:
    """What a fitted step or a bundle's spec checks a knob against: the schema's own Literal."""
    from typing import get_args

    from pipeline.config.base import check_choice
    from pipeline.config.data import AlongTimeFill, CleanConfig, NumericFill, RowFill

    assert get_args(NumericFill) == get_args(RowFill) + get_args(AlongTimeFill)
    assert get_args(CleanConfig.model_fields["numeric"].annotation) == get_args(NumericFill)
    check_choice("clean.numeric", "knn", NumericFill)
    with pytest.raises(PipelineError, match=r"^clean\.numeric: expected one of \('mean', 'median', 'most_frequent', "
                                            r"'constant', 'knn', 'ffill', 'interpolate'\), got 'mode'$"):
        check_choice("clean.numeric", "mode", NumericFill, PipelineError)


def test_the_auto_tables_cover_their_keys_values_and_give_values_the_schema_admits(
    default_params: dict[str, Any],
) -> None:
    """What each 'auto' becomes is a table by modality, network kind or task: one entry per value of that type,
    each an allowed value of the key it settles, and every way of updating has its rows per step."""
    from typing import get_args

    from pipeline.config.auto import BY_KIND, BY_MODALITY, BY_TASK
    from pipeline.config.data import Imbalance, Modality, Task
    from pipeline.config.training import Metric, NetKind, Pool, Update

    for table in BY_MODALITY.values():
        assert set(table) == set(get_args(Modality))
    assert set(BY_KIND["model.hidden"]) == set(get_args(NetKind)) >= set(BY_KIND["train.weight_decay"])
    assert set(BY_TASK) == set(get_args(Task))
    assert set(BY_MODALITY["model.kind"].values()) <= set(get_args(NetKind))
    assert set(BY_MODALITY["model.cnn.pool"].values()) <= set(get_args(Pool))
    assert {t["clean.imbalance"] for t in BY_TASK.values()} <= set(get_args(Imbalance))
    assert {t["evaluate.primary_metric"] for t in BY_TASK.values()} <= set(get_args(Metric))
    train = parse_params(default_params).train
    rows = {update: train.model_copy(update={"update": update}).rows_per_step(100) for update in get_args(Update)}
    assert rows == {"mini_batch": train.batch_size, "full_batch": 100, "stochastic": 1}
