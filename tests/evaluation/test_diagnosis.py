"""Diagnosis: hand-made histories that should and should not trigger each rule, and the report built from them."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.evaluation.diagnosis import as_json, diagnose, report

LAYERS = ("layers.0.weight", "layers.3.weight", "layers.6.weight")  # network order: output layer last
HEALTHY_METRICS = {"train": {"accuracy": 1.0}, "val": {"accuracy": 1.0}, "test": {"accuracy": 0.9855}}
HEALTHY_BASELINES = {"dummy": {"accuracy": 0.4348}, "linear": {"accuracy": 0.9855}, "forest": {"accuracy": 0.9855}}


def geometric(start: float, end: float, n: int) -> list[float]:
    """``n`` values falling (or rising) evenly on a log scale from ``start`` to ``end``."""
    return [start * (end / start) ** (i / (n - 1)) for i in range(n)]


def history(train_loss: list[float], val_loss: list[float] | None = None,
            norms: dict[str, list[float]] | None = None, dead: dict[str, list[float]] | None = None,
            ) -> list[dict[str, float]]:
    """Rows as models/train.json writes them: one per epoch, grad_norm keys in network order, lr 0.01."""
    rows = []
    for i, loss in enumerate(train_loss):
        row: dict[str, float] = {"epoch": i, "train/loss": loss, "lr": 0.01}
        if val_loss is not None:
            row["val/loss"] = val_loss[i]
        for name, values in (norms or {}).items():
            row[f"grad_norm/{name}"] = values[i]
        for name, values in (dead or {}).items():
            row[f"dead_relu/{name}"] = values[i]
        rows.append(row)
    return rows


def healthy(n: int = 40) -> list[dict[str, float]]:
    """The penguins FNN run: loss falls ~640x and every gradient norm ~1000x as the model converges."""
    return history(
        geometric(0.7986, 0.00124, n), geometric(0.409, 7.2e-05, n),
        {LAYERS[0]: geometric(0.1928, 0.000139, n), LAYERS[1]: geometric(0.2127, 8.29e-05, n),
         LAYERS[2]: geometric(0.4425, 0.000316, n)},
        dead={"layers.1": [0.0156] * n, "layers.4": [0.156] * n},
    )


def kinds(findings: list) -> list[str]:
    return [f.kind for f in findings]


def by_kind(findings: list, kind: str):
    (found,) = [f for f in findings if f.kind == kind]
    return found


def test_a_healthy_converging_run_has_no_finding_although_its_gradient_norms_fall_1000x() -> None:
    h = healthy()
    assert h[0]["grad_norm/layers.0.weight"] / h[-1]["grad_norm/layers.0.weight"] > 1000
    findings = diagnose(h, "classification", HEALTHY_METRICS, "accuracy", HEALTHY_BASELINES)
    assert findings == []
    text = report(findings, "penguins fnn", h, HEALTHY_METRICS, "accuracy")
    assert text.startswith("Diagnosis: penguins fnn\n")
    assert "trained 40 epochs, best epoch 39; train/loss 0.7986 -> 0.0012, val/loss 0.4090 -> 0.0001" in text
    assert "accuracy: train 1.0000, val 1.0000, test 0.9855" in text
    assert "no problems found: checked overfitting, underfitting, vanishing and exploding gradients, " \
           "dead ReLU units, divergence" in text


def test_a_sigmoid_net_whose_first_layer_gets_1e5_less_gradient_than_the_output_is_vanishing() -> None:
    n = 30
    h = history(geometric(0.69, 0.4, n), geometric(0.7, 0.45, n),
                {LAYERS[0]: [1e-6] * n, LAYERS[1]: [3e-3] * n, LAYERS[2]: [0.1] * n})
    found = by_kind(diagnose(h, "classification", {}, "accuracy", activation="sigmoid"), "vanishing_gradients")
    assert found.evidence["worst_layer"] == "layers.0.weight"
    assert found.evidence["layers"] == "layers.0.weight"  # layers.3 at 3e-2 of the output is not vanishing
    assert found.evidence["median_ratio"] == pytest.approx(1e-5)
    assert found.knobs[0] == "model.activation" and "model.init" in found.knobs and "model.norm" in found.knobs
    assert "xavier" in found.advice and "kaiming" in found.advice
    relu = by_kind(diagnose(h, "classification", {}, "accuracy", activation="relu"), "vanishing_gradients")
    assert relu.knobs[0] == "model.init"


def test_layers_keep_network_order_not_alphabetical_order() -> None:
    # alphabetically head.0.weight sorts first, which would make rnn.weight_ih_l0 the "output" layer
    h = history([0.7, 0.6, 0.55], norms={"rnn.weight_ih_l0": [1e-7] * 3, "head.0.weight": [0.05] * 3})
    findings = diagnose(h, "classification", {}, "accuracy")
    assert kinds(findings) == ["vanishing_gradients"]
    assert findings[0].evidence["worst_layer"] == "rnn.weight_ih_l0"


def test_gradients_that_die_while_the_loss_is_stuck_are_vanishing_but_not_while_it_converges() -> None:
    n = 20
    norms = {LAYERS[0]: geometric(0.2, 1e-5, n), LAYERS[2]: geometric(0.4, 2e-5, n)}  # same ratio throughout
    stuck = diagnose(history(geometric(0.69, 0.66, n), norms=norms), "classification", {}, "accuracy")
    found = by_kind(stuck, "vanishing_gradients")
    assert found.evidence["stalled_layer"] == "layers.0.weight"
    assert found.evidence["first_train_loss"] == pytest.approx(0.69)
    assert "worst_layer" not in found.evidence  # across depth the layers are alike
    learning = diagnose(history(geometric(0.69, 0.001, n), norms=norms), "classification", {}, "accuracy")
    assert learning == []


def test_exploding_growth_names_the_layer_its_peak_and_growth() -> None:
    h = history([0.7, 0.65, 0.6, 0.58, 0.57], norms={LAYERS[0]: [0.5, 5.0, 50.0, 500.0, 5000.0],
                                                     LAYERS[2]: [0.5, 0.6, 0.55, 0.5, 0.6]})
    findings = diagnose(h, "classification", {}, "accuracy")
    assert kinds(findings) == ["exploding_gradients"]
    ev = findings[0].evidence
    assert (ev["layer"], ev["epoch"], ev["max_norm"]) == ("layers.0.weight", 4, 5000.0)
    assert ev["growth"] == pytest.approx(1e4)
    assert findings[0].knobs[:2] == ("train.gradient_clip.mode", "train.gradient_clip.max")


def test_a_layer_far_above_the_output_or_non_finite_is_exploding() -> None:
    ratio = diagnose(history([0.7, 0.6], norms={LAYERS[0]: [300.0, 400.0], LAYERS[2]: [0.1, 0.1]}),
                     "classification", {}, "accuracy")
    assert by_kind(ratio, "exploding_gradients").evidence["median_ratio"] == pytest.approx(3500.0)
    nan = diagnose(history([0.7], norms={LAYERS[0]: [math.inf], LAYERS[2]: [0.1]}), "classification", {}, "accuracy")
    assert by_kind(nan, "exploding_gradients").evidence == {"layer": "layers.0.weight", "max_norm": "inf", "epoch": 0}
    json.dumps(as_json(nan), allow_nan=False)  # metrics.json is strict JSON


def test_a_layer_that_starts_vanished_and_recovers_is_not_exploding() -> None:
    h = history([0.7, 0.6, 0.5, 0.4], norms={LAYERS[0]: [1e-6, 1e-4, 1e-2, 2e-2], LAYERS[1]: [0.1] * 4,
                                             LAYERS[2]: [0.1, 0.1, 0.08, 0.05]})
    assert "exploding_gradients" not in kinds(diagnose(h, "classification", {}, "accuracy"))


def test_dead_relu_over_half_at_the_last_epoch_only_under_relu() -> None:
    h = history([0.7, 0.6, 0.5], dead={"layers.1": [0.1, 0.4, 0.7], "layers.4": [0.2, 0.2, 0.3]})
    found = by_kind(diagnose(h, "classification", {}, "accuracy"), "dead_relu")
    assert found.evidence == {"layer": "layers.1", "share": 0.7, "layers": 1, "epoch": 2}
    assert found.knobs[0] == "model.activation" and "leaky_relu" in found.advice
    assert diagnose(h, "classification", {}, "accuracy", activation="leaky_relu") == []
    early = history([0.7, 0.6, 0.5], dead={"layers.1": [0.9, 0.6, 0.3]})  # revived by the end
    assert diagnose(early, "classification", {}, "accuracy") == []


def test_a_loss_that_ends_above_its_start_diverged_with_the_lr_named() -> None:
    h = history([0.7, 1.5, 3.0, 6.0, 12.0])
    findings = diagnose(h, "classification", {}, "accuracy")
    assert kinds(findings) == ["diverged"]
    ev = findings[0].evidence
    assert (ev["epoch"], ev["loss"], ev["first_loss"], ev["lr"]) == (4, 12.0, 0.7, 0.01)  # 12 is 17x the best 0.7
    assert findings[0].knobs[0] == "train.lr" and "train.lr_find" in findings[0].knobs
    assert "0.01 -> 0.001" in findings[0].advice


def test_a_jump_back_up_diverged_but_a_tiny_spike_of_a_converged_run_did_not() -> None:
    jump = diagnose(history([0.7, 0.3, 0.05, 0.6, 0.2]), "classification", {}, "accuracy")
    assert by_kind(jump, "diverged").evidence["epoch"] == 3
    assert by_kind(jump, "diverged").evidence["best_loss"] == 0.05
    spike = history([0.8, 0.1, 1e-3, 7e-6, 0.06, 1e-4])  # 8000x its best, but a tenth of where it started
    assert diagnose(spike, "classification", {}, "accuracy") == []
    creeping = diagnose(history([0.7, 0.75, 0.8, 0.85]), "classification", {}, "accuracy")  # no jump, ends higher
    assert by_kind(creeping, "diverged").evidence == {"epoch": 3, "loss": 0.85, "first_loss": 0.7,
                                                      "final_loss": 0.85, "lr": 0.01}
    flat = history([0.6931, 0.6932, 0.6930, 0.6933])  # stuck, not diverging
    assert "diverged" not in kinds(diagnose(flat, "classification", {}, "accuracy"))


def test_a_non_finite_loss_diverged() -> None:
    findings = diagnose(history([0.7, 0.5], [0.7, math.nan]), "classification", {}, "accuracy")
    assert by_kind(findings, "diverged").evidence == {"loss": "nan", "epoch": 1, "lr": 0.01}


def test_overfitting_names_the_epoch_val_loss_bottomed_out() -> None:
    val = [1.0, 0.8, 0.6, 0.45, 0.35, 0.312, 0.33, 0.36, 0.4, 0.45, 0.498]
    train = geometric(0.9, 0.02, len(val))
    metrics = {"train": {"accuracy": 1.0}, "val": {"accuracy": 0.874}}
    findings = diagnose(history(train, val), "classification", metrics, "accuracy")
    assert kinds(findings) == ["overfitting"]
    f = findings[0]
    assert f.evidence["min_epoch"] == 5 and f.evidence["min_val_loss"] == 0.312
    assert f.evidence["final_val_loss"] == 0.498 and f.evidence["train_loss_at_min"] == pytest.approx(train[5])
    assert (f.evidence["train_primary"], f.evidence["val_primary"]) == (1.0, 0.874)
    assert "epoch 5" in f.summary and "train accuracy 1.000 vs val 0.874" in f.summary
    assert "epoch 5's" in f.advice
    assert f.knobs[:3] == ("model.dropout", "train.weight_decay", "train.augment")


def test_a_flat_val_loss_with_noise_or_a_rising_train_loss_is_not_overfitting() -> None:
    settled = history(geometric(0.8, 1e-4, 6), [0.4, 2.35e-6, 2.4e-6, 2.3e-6, 2.6e-6, 2.9e-6])  # +26%, but 1e-6
    assert diagnose(settled, "classification", {}, "accuracy") == []
    both_rise = history([0.5, 0.4, 0.45, 0.5], [0.5, 0.4, 0.5, 0.6])  # train rising too: not a gap opening
    assert "overfitting" not in kinds(diagnose(both_rise, "classification", {}, "accuracy"))


def test_a_wide_final_metric_gap_alone_is_overfitting_and_a_narrow_one_is_not() -> None:
    wide = {"train": {"macro_f1": 0.95}, "val": {"macro_f1": 0.88}}
    f = by_kind(diagnose([], "classification", wide, "macro_f1"), "overfitting")
    assert f.evidence == {"train_primary": 0.95, "val_primary": 0.88}
    narrow = {"train": {"macro_f1": 0.95}, "val": {"macro_f1": 0.92}}
    assert diagnose([], "classification", narrow, "macro_f1") == []


@pytest.mark.parametrize(("primary", "train", "val", "flagged"), [
    ("mae", 0.10, 0.20, True), ("mae", 0.10, 0.12, False), ("rmse", 0.3, 0.46, True),
    ("r2", 0.92, 0.70, True), ("r2", 0.92, 0.85, False),
])
def test_regression_gaps(primary: str, train: float, val: float, flagged: bool) -> None:
    metrics = {"train": {primary: train}, "val": {primary: val}}
    assert ("overfitting" in kinds(diagnose([], "regression", metrics, primary))) is flagged


def test_underfitting_when_the_train_score_does_not_beat_the_best_baseline() -> None:
    metrics = {"train": {"accuracy": 0.72}, "val": {"accuracy": 0.71}}
    baselines = {"dummy": {"accuracy": 0.4}, "linear": {"accuracy": 0.78}, "forest": {"accuracy": 0.80}}
    f = by_kind(diagnose([], "classification", metrics, "accuracy", baselines), "underfitting")
    assert f.evidence == {"metric": "accuracy", "train_value": 0.72, "baseline": "forest", "baseline_value": 0.80}
    assert f.knobs[0] == "model.hidden" and "train.max_epochs" in f.knobs
    fits = {"train": {"accuracy": 0.9}, "val": {"accuracy": 0.88}}
    assert diagnose([], "classification", fits, "accuracy", baselines) == []
    perfect = {"train": {"accuracy": 1.0}, "val": {"accuracy": 1.0}}  # an easy task: a tie at the top is fine
    assert diagnose([], "classification", perfect, "accuracy", {"forest": {"accuracy": 1.0}}) == []


def test_underfitting_without_baselines_uses_chance_and_the_majority_share() -> None:
    low = diagnose([], "classification", {"train": {"accuracy": 0.55}}, "accuracy")
    assert by_kind(low, "underfitting").evidence == {"metric": "accuracy", "train_value": 0.55}
    per_class = {"a": {"support": 90}, "b": {"support": 10}}
    majority = {"train": {"accuracy": 0.905, "per_class": per_class}}
    f = by_kind(diagnose([], "classification", majority, "accuracy"), "underfitting")
    assert f.evidence["majority_share"] == pytest.approx(0.9)
    assert diagnose([], "classification", {"train": {"accuracy": 0.95, "per_class": per_class}}, "accuracy") == []


def test_regression_underfitting() -> None:
    baselines = {"dummy": {"mae": 1.0}, "linear": {"mae": 0.48}}
    worse = {"train": {"mae": 0.5}, "val": {"mae": 0.55}}
    f = by_kind(diagnose([], "regression", worse, "mae", baselines), "underfitting")
    assert (f.evidence["baseline"], f.evidence["baseline_value"]) == ("linear", 0.48)
    better = {"train": {"mae": 0.3}, "val": {"mae": 0.32}}
    assert diagnose([], "regression", better, "mae", baselines) == []
    assert kinds(diagnose([], "regression", {"train": {"r2": 0.05}}, "r2")) == ["underfitting"]
    assert diagnose([], "regression", {"train": {"r2": 0.6}, "val": {"r2": 0.55}}, "r2") == []


def test_missing_keys_none_values_and_degenerate_histories_do_not_crash() -> None:
    assert diagnose([], "classification", {}, "accuracy") == []
    assert diagnose(None, "regression", None, "mae", None) == []  # type: ignore[arg-type]
    one = healthy(40)[:1]
    assert diagnose(one, "classification", {}, "accuracy") == []
    ragged = [{"epoch": 0, "train/loss": 0.7}, {"epoch": 1, "val/loss": None, "lr": None},
              {"grad_norm/a.weight": 0.1}, {"train/loss": 0.5, "grad_norm/a.weight": None}]
    assert diagnose(ragged, "classification", {"train": {"accuracy": None}, "val": None}, "accuracy") == []
    text = report([], "empty", [], {}, "accuracy")
    assert "trained 0 epochs" in text and "accuracy: train n/a, val n/a, test n/a" in text
    assert "no problems found: checked overfitting, underfitting, divergence" in text


def test_report_lists_each_finding_with_its_knobs_and_as_json_is_strict_json() -> None:
    val = [1.0, 0.6, 0.4, 0.5, 0.7]
    h = history([0.9, 0.5, 0.3, 0.2, 0.1], val, dead={"layers.1": [0.1, 0.3, 0.5, 0.6, 0.8]})
    findings = diagnose(h, "classification", {}, "accuracy")
    assert kinds(findings) == ["overfitting", "dead_relu"]
    text = report(findings, "toy fnn", h, {}, "accuracy")
    for f in findings:
        assert f"  - {f.kind}: {f.summary}" in text
        assert f"try: {', '.join(f.knobs)} — " in text
    assert "no problems found" not in text
    data = json.loads(json.dumps(as_json(findings), allow_nan=False))
    assert data[1] == {"kind": "dead_relu", "summary": findings[1].summary, "knobs": list(findings[1].knobs),
                       "advice": findings[1].advice, "evidence": findings[1].evidence}


def test_a_val_loss_that_zigzags_while_train_loss_settles_is_unstable_validation() -> None:
    n = 40
    train = geometric(0.65, 0.15, n)
    val = [0.6 if i % 2 else 1.5 for i in range(n)]  # 2.5x up and down every epoch
    rows = history(train, val)
    for i, row in enumerate(rows):
        row["val/acc"] = 1.0 if i % 2 else 0.5
    found = by_kind(diagnose(rows, "classification", {}, "accuracy"), "unstable_validation")
    assert found.evidence["from_epoch"] == 20 and found.evidence["to_epoch"] == 39
    assert found.evidence["val_swing"] == pytest.approx(2.5)
    assert found.evidence["val/acc_min"] == 0.5 and found.evidence["val/acc_max"] == 1.0
    assert found.knobs[0] == "train.lr" and "split.val" in found.knobs


@pytest.mark.parametrize("case", ["smooth", "both-zigzag", "too-short"])
def test_steady_val_loss_or_a_run_noisy_everywhere_is_not_unstable_validation(case: str) -> None:
    n = 5 if case == "too-short" else 40
    zigzag = [0.6 if i % 2 else 1.5 for i in range(n)]
    train = zigzag if case == "both-zigzag" else geometric(0.65, 0.15, n)
    val = geometric(0.7, 0.3, n) if case == "smooth" else zigzag
    assert "unstable_validation" not in kinds(diagnose(history(train, val), "classification", {}, "accuracy"))
