"""When the network loses to a baseline: the likely cause, read from what evaluate measured, and the keys to try.

Pure arithmetic on ``metrics.json``'s test scores (the network's and each baseline's), ``models/train.json``'s
epoch counts, the model's decision rule and the train split's size. Each cause is a
:class:`~pipeline.evaluation.diagnosis.Finding`, so it prints, lands in ``metrics.json`` and is tagged exactly as
the training diagnosis is. Causes, in this order (several can hold at once):

1. threshold (classification): the network ranks the test rows as well as the best baseline (ROC-AUC within
   0.01 of it, or better) yet loses on the primary metric: the ranking was learned, the decision is off.
2. cut_short: training ran all ``train.max_epochs`` and its best epoch came within the last ``patience`` epochs:
   it was still improving when it was stopped.
3. imbalance (classification): the smallest class is under 20% of the train split and the network's balanced
   accuracy trails the best baseline's by more than 0.02: the rare classes are the ones it gets wrong.
4. little_data: fewer than 1,000 train examples, where a forest or a linear model often is the better model.

A loss none of these explains is still reported (``loses``), with the knobs that search or restarts would turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.evaluation.diagnosis import Finding

RANKING_MARGIN = 0.01  # ROC-AUC within this of the best baseline's: the ranking is as good
BALANCE_MARGIN = 0.02  # balanced accuracy this far behind: the rare classes are what the network misses
RARE_SHARE = 0.2  # a class under 20% of train makes a table imbalanced
LITTLE_DATA = 1000  # train examples under which a network rarely beats a forest on a table


@dataclass(frozen=True)
class Run:
    """What the causes are read from.

    Attributes:
        task: ``classification`` or ``regression``.
        primary: The primary metric.
        network: The network's test metrics.
        baselines: Per baseline its test metrics.
        best: The name of the best baseline on ``primary``.
        epochs: Epochs trained, and the best one, ``max_epochs`` and the early-stopping patience.
        n_train: Train examples (rows, images or series) as the network saw them.
        natural_prior: Each class's share of the train split as drawn (None for regression).
        rebalanced: Whether training saw another class balance (resampling or class weights).
        corrected: Whether the model corrects its probabilities back to the natural balance.
    """

    task: str
    primary: str
    network: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    best: str
    epochs: tuple[int, int, int, int]
    n_train: int
    natural_prior: dict[str, float] | None
    rebalanced: bool
    corrected: bool


def _value(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) and value == value else None


def _threshold(run: Run) -> Finding | None:
    mine, theirs = _value(run.network, "roc_auc"), _value(run.baselines[run.best], "roc_auc")
    if run.task != "classification" or mine is None or theirs is None or mine < theirs - RANKING_MARGIN:
        return None
    if run.rebalanced and not run.corrected:
        keys, advice = ("clean.prior_correction", "clean.imbalance"), (
            "training saw a rebalanced class mix and the model predicts under it: set clean.prior_correction: true "
            "(or clean.imbalance: none) to decide at the data's own class balance")
    else:
        keys, advice = ("evaluate.primary_metric", "clean.imbalance", "train.restarts"), (
            "the probabilities rank well but the most probable class is not the best call for this metric: for "
            "macro F1 on rare classes try clean.imbalance: class_weight with clean.prior_correction: false; "
            "train.restarts averages out an unlucky decision boundary")
    return Finding("threshold", f"test ROC-AUC {mine:.3f} against the {run.best} baseline's {theirs:.3f}: the ranking "
                   f"is as good, the decision is not ({run.primary} loses)", keys, advice,
                   {"roc_auc": mine, "baseline_roc_auc": theirs, "baseline": run.best})


def _cut_short(run: Run) -> Finding | None:
    epochs, best, max_epochs, patience = run.epochs
    if epochs < max_epochs or best <= epochs - patience:
        return None
    return Finding("cut_short", f"training ran all {max_epochs} epochs (train.max_epochs) and its best epoch was "
                   f"{best}, within the last {patience} (train.early_stopping.patience): it was still improving",
                   ("train.max_epochs", "train.lr", "train.schedule.kind"),
                   "raise train.max_epochs (early stopping still ends it once it stops improving), or raise "
                   "train.lr so it gets there sooner", {"epochs": epochs, "best_epoch": best, "max_epochs": max_epochs})


def _imbalance(run: Run) -> Finding | None:
    if run.task != "classification" or not run.natural_prior:
        return None
    rare = min(run.natural_prior, key=run.natural_prior.__getitem__)
    share = run.natural_prior[rare]
    mine, theirs = _value(run.network, "balanced_accuracy"), _value(run.baselines[run.best], "balanced_accuracy")
    if share >= RARE_SHARE or mine is None or theirs is None or mine >= theirs - BALANCE_MARGIN:
        return None
    return Finding("imbalance", f"class {rare!r} is {share:.1%} of train and the network's balanced accuracy "
                   f"{mine:.3f} trails the {run.best} baseline's {theirs:.3f}: the rare classes are what it misses",
                   ("clean.imbalance", "clean.prior_correction", "train.max_epochs"),
                   "give the rare classes more weight in training (clean.imbalance: class_weight or upsample; keep "
                   "clean.prior_correction: true for accuracy and calibration, false to favour their recall)",
                   {"class": rare, "share": share, "balanced_accuracy": mine, "baseline_balanced_accuracy": theirs})


def _little_data(run: Run) -> Finding | None:
    if run.n_train >= LITTLE_DATA:
        return None
    return Finding("little_data", f"{run.n_train} train examples: on data this small a {run.best} model is often "
                   "the better one", ("model.hidden", "model.dropout", "train.weight_decay", "train.restarts"),
                   "a smaller network (model.hidden) with more regularisation (model.dropout, train.weight_decay), "
                   "and train.restarts to average out the luck of the draw; or use the baseline",
                   {"n_train": run.n_train, "baseline": run.best})


def explain(run: Run) -> list[Finding]:
    """The likely causes of a loss to the best baseline, most specific first; never empty."""
    found = [f for f in (_threshold(run), _cut_short(run), _imbalance(run), _little_data(run)) if f is not None]
    if found:
        return found
    mine, theirs = _value(run.network, run.primary), _value(run.baselines[run.best], run.primary)
    return [Finding("loses", f"test {run.primary} {mine} against the {run.best} baseline's {theirs}, with no single "
                    "cause in the numbers", ("train.lr", "model.hidden", "train.restarts", "train.max_epochs"),
                    "retune train.lr and model.hidden, and compare over train.restarts: the difference may be the "
                    "luck of one initialisation", {"value": mine, "baseline_value": theirs, "baseline": run.best})]
