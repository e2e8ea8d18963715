"""The bundle's decision rule: prior correction after rebalancing, plain argmax otherwise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.decision import Decision
from pipeline.preprocess.rebalance import class_prior, class_weights


def _report(natural: dict[str, int], after: dict[str, int], weights: dict[str, float] | None = None,
            correct: bool = True) -> dict:
    return {"class_prior": {"natural": class_prior(natural), "trained": class_prior(after, weights)},
            "prior_correction": correct}


def test_upsampled_training_is_corrected_back_to_the_natural_prior() -> None:
    # 97 "no" and 3 "yes" upsampled to 97 each: the network learned p(yes | x) under a 50% prior
    decision = Decision.from_report(_report({"no": 97, "yes": 3}, {"no": 97, "yes": 97}), ["no", "yes"])
    assert decision.corrects
    assert decision.offsets == pytest.approx((math.log(0.97 / 0.5), math.log(0.03 / 0.5)))
    # a row the rebalanced network calls 60% "yes" is, at the natural 3%, about 4.4% "yes" (Bayes' rule)
    logits = np.log(np.array([[0.4, 0.6]]))
    shifted = decision.apply(logits)
    proba = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    expected = 0.6 * 0.03 / 0.5 / (0.6 * 0.03 / 0.5 + 0.4 * 0.97 / 0.5)
    assert proba[0, 1] == pytest.approx(expected)
    assert proba.argmax() == 0


def test_class_weights_count_as_a_trained_prior_too() -> None:
    labels = pd.Series(["a"] * 90 + ["b"] * 10)
    weights = class_weights(labels)
    counts = {"a": 90, "b": 10}
    assert class_prior(counts, weights) == pytest.approx({"a": 0.5, "b": 0.5})
    decision = Decision.from_report(_report(counts, counts, weights), ["a", "b"])
    assert decision.offsets == pytest.approx((math.log(0.9 / 0.5), math.log(0.1 / 0.5)))


def test_no_rebalancing_or_correction_off_leaves_the_logits_alone() -> None:
    logits = np.array([[0.3, -1.2, 2.0]], dtype="float32")
    same = Decision.from_report(_report({"a": 5, "b": 3, "c": 2}, {"a": 5, "b": 3, "c": 2}, correct=False),
                                ["a", "b", "c"])
    assert not same.corrects and same.apply(logits) is logits
    off = Decision.from_report(_report({"a": 5, "b": 1}, {"a": 5, "b": 5}, correct=False), ["a", "b"])
    assert not off.corrects and off.natural == pytest.approx({"a": 5 / 6, "b": 1 / 6})


def test_offsets_follow_the_networks_class_order_not_the_reports() -> None:
    report = _report({"x": 8, "y": 2}, {"x": 8, "y": 8})
    forward, backward = Decision.from_report(report, ["x", "y"]), Decision.from_report(report, ["y", "x"])
    assert backward.offsets == forward.offsets[::-1]
    assert forward.offsets[1] == pytest.approx(math.log(0.2 / 0.5))


def test_round_trip_and_refusals() -> None:
    decision = Decision.from_report(_report({"0": 9, "1": 1}, {"0": 9, "1": 9}), [0, 1])
    assert Decision.from_dict(decision.to_dict()) == decision
    with pytest.raises(ValueError, match="rule: expected 'argmax' or 'prior_correction', got 'vote'"):
        Decision.from_dict({**decision.to_dict(), "rule": "vote"})
    with pytest.raises(KeyError):
        Decision.from_dict({"rule": "argmax"})
    with pytest.raises(ValueError, match="expected 2 class offsets, got 3"):
        Decision("prior_correction", (0.0, 0.1, 0.2)).apply(np.zeros((1, 2)))
