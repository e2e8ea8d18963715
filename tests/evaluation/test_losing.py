"""Why the network lost to a baseline: each cause from the numbers that show it."""

from __future__ import annotations

from dataclasses import replace

from pipeline.evaluation.losing import Run, explain

NET = {"accuracy": 0.86, "macro_f1": 0.61, "balanced_accuracy": 0.80, "roc_auc": 0.95}
LINEAR = {"accuracy": 0.97, "macro_f1": 0.71, "balanced_accuracy": 0.74, "roc_auc": 0.95}
RUN = Run("classification", "accuracy", NET, {"linear": LINEAR, "dummy": {"accuracy": 0.97}}, "linear",
          (40, 15, 200, 20), 5000, {"no": 0.97, "yes": 0.03}, True, False)


def _kinds(run: Run) -> list[str]:
    return [f.kind for f in explain(run)]


def test_a_good_ranking_with_a_bad_decision_is_the_threshold_and_names_the_correction() -> None:
    found = explain(RUN)
    assert [f.kind for f in found] == ["threshold"]
    assert found[0].knobs[0] == "clean.prior_correction"
    assert found[0].evidence == {"roc_auc": 0.95, "baseline_roc_auc": 0.95, "baseline": "linear"}
    # corrected already: the advice turns to the metric and class weights instead
    assert explain(replace(RUN, corrected=True))[0].knobs[0] == "evaluate.primary_metric"
    # a worse ranking is not a threshold problem
    assert "threshold" not in _kinds(replace(RUN, network={**NET, "roc_auc": 0.90}))


def test_a_run_stopped_by_max_epochs_while_improving_is_cut_short() -> None:
    assert "cut_short" in _kinds(replace(RUN, epochs=(200, 195, 200, 20)))
    assert "cut_short" not in _kinds(replace(RUN, epochs=(200, 150, 200, 20)))  # settled long before the end
    assert "cut_short" not in _kinds(replace(RUN, epochs=(60, 40, 200, 20)))  # early stopping ended it


def test_a_rare_class_the_network_misses_is_imbalance() -> None:
    run = replace(RUN, network={**NET, "roc_auc": 0.8, "balanced_accuracy": 0.6})
    assert _kinds(run) == ["imbalance"]
    assert explain(run)[0].evidence["class"] == "yes"
    assert "imbalance" not in _kinds(replace(run, natural_prior={"no": 0.6, "yes": 0.4}))


def test_small_data_is_named_and_an_unexplained_loss_still_says_what_to_try() -> None:
    plain = replace(RUN, network={**NET, "roc_auc": 0.8}, n_train=300)
    assert _kinds(plain) == ["little_data"]
    regression = Run("regression", "r2", {"r2": 0.5}, {"forest": {"r2": 0.6}}, "forest", (50, 30, 200, 20), 5000,
                     None, False, False)
    found = explain(regression)
    assert [f.kind for f in found] == ["loses"] and "train.lr" in found[0].knobs
