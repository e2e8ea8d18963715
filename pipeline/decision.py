"""How a classifier's outputs become probabilities and a label: the rule a model bundle records in ``decision.json``.

Resampling the train split (up- or downsampling, SMOTE) or weighting the loss by class teaches the network
p(class | x) under the class balance *training* saw, not the one new data has. Its probabilities then overstate
the rare classes, and the label it picks (the most probable class) trades accuracy for recall on them: on a table
whose positive class is 3%, upsampling took accuracy from 0.97 (always "no") down to 0.86. Bayes' rule undoes it
exactly when the network is calibrated for the prior it was trained under (Saerens, Latinne and Decaestecker,
2002, "Adjusting the outputs of a classifier to new a priori probabilities"):

    p(c | x) = p_train(c | x) * natural(c) / trained(c), renormalised,

which on logits is adding ``log(natural(c) / trained(c))`` to each class's logit before the softmax. The clean
stage measures both priors on the train split (``report.json``: ``class_prior``); train writes them, and whether
to correct (``clean.prior_correction``), into the bundle, so ``predict``, MLflow's loader and evaluate all apply
the same rule. Without rebalancing the two priors are equal and the rule is plain ``argmax``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Rule = Literal["argmax", "prior_correction"]


@dataclass(frozen=True)
class Decision:
    """The decision rule of a classifier bundle.

    Attributes:
        rule: ``argmax`` (the network's own probabilities) or ``prior_correction`` (shifted to ``natural``).
        offsets: Per class index, what is added to its logit (all 0 for ``argmax``).
        natural: Each class's share of the train split as drawn (keys: the class labels as text).
        trained: Each class's share of what training saw: resampled counts times loss weights.
    """

    rule: Rule = "argmax"
    offsets: tuple[float, ...] = ()
    natural: dict[str, float] | None = None
    trained: dict[str, float] | None = field(default=None)

    @classmethod
    def from_report(cls, report: dict[str, Any], classes: list) -> Decision:
        """The rule clean's ``report.json`` asks for, with offsets in the order of ``classes`` (the network's).

        Raises:
            KeyError, TypeError: When the report lacks a class or the priors (``io.read_state`` names the file).
        """
        prior = report["class_prior"]
        if prior is None:  # regression: nothing to decide between
            return cls()
        natural = {str(k): float(v) for k, v in prior["natural"].items()}
        trained = {str(k): float(v) for k, v in prior["trained"].items()}
        if not report["prior_correction"]:
            return cls("argmax", tuple(0.0 for _ in classes), natural, trained)
        offsets = tuple(math.log(natural[str(c)] / trained[str(c)]) for c in classes)
        return cls("prior_correction", offsets, natural, trained)

    @property
    def corrects(self) -> bool:
        """True when the rule moves the network's probabilities."""
        return self.rule == "prior_correction"

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits -> the logits the rule decides on (the softmax of them are the reported probabilities)."""
        if not self.corrects:
            return logits
        if logits.shape[1] != len(self.offsets):
            raise ValueError(f"decision.json: expected {logits.shape[1]} class offsets, got {len(self.offsets)}")
        return logits + np.asarray(self.offsets, dtype=logits.dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rule": self.rule, "offsets": list(self.offsets), "natural": self.natural, "trained": self.trained}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, ValueError, TypeError: On another shape (``io.read_state`` turns them into one line).
        """
        rule = state["rule"]
        if rule not in ("argmax", "prior_correction"):
            raise ValueError(f"rule: expected 'argmax' or 'prior_correction', got {rule!r}")
        offsets = tuple(float(v) for v in state["offsets"])
        if not all(math.isfinite(v) for v in offsets):
            raise ValueError(f"offsets: expected finite numbers, got {list(offsets)}")
        natural, trained = state["natural"], state["trained"]
        return cls(rule, offsets, None if natural is None else dict(natural), None if trained is None else dict(trained))
