"""Datasets the project never tuned on, for judging the default params (``quality.py --defaults``).

Each builder returns a :class:`Dataset`: a DataFrame as a user would drop it into ``inputs/``, the target column and,
for long-format sequences, the series and step columns. The real tables come from scikit-learn's bundled files (the
project's own presets, penguins, diabetes and digits, are left out); the synthetic ones are seeded, each built to
carry one property the defaults must cope with: coarse repeated rows, a rare class, missing values, outliers in a
numeric target, text categories, a nonlinear regression with categories, fixed-length and variable-length series.
Every one is small enough that one ``dvc repro`` stays well under a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GUNPOINT = Path(__file__).resolve().parents[1] / "pipeline" / "datasets" / "gunpoint.csv.gz"


@dataclass(frozen=True)
class Dataset:
    """A table for the suite.

    Attributes:
        frame: One row per example, or per (series, step) for sequences.
        target: The column to predict.
        about: What the table is and which property it tests, in a few words.
        series: The series column of long-format sequences (None for one row per example).
        step: The step column of long-format sequences.
        suffix: The file type the table is written as under ``inputs/`` (``.csv`` or ``.parquet``).
    """

    frame: pd.DataFrame
    target: str
    about: str
    series: str | None = None
    step: str | None = None
    suffix: str = ".csv"


def _sklearn(loader: Callable, target: str, about: str) -> Dataset:
    """A scikit-learn bundled table with its class names as a text target."""
    bunch = loader(as_frame=True)
    frame = bunch.data.copy()
    frame[target] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return Dataset(frame, target, about)


def iris() -> Dataset:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species."""
    from sklearn.datasets import load_iris

    return _sklearn(load_iris, "species", "real, 150 rows, 3 balanced classes")


def wine() -> Dataset:
    """The UCI wine recognition data: 178 wines, 13 chemical measurements on very different scales, 3 cultivars."""
    from sklearn.datasets import load_wine

    return _sklearn(load_wine, "cultivar", "real, 178 rows, 13 features on different scales")


def breast_cancer() -> Dataset:
    """The Wisconsin diagnostic breast cancer data: 569 tumours, 30 features, malignant or benign."""
    from sklearn.datasets import load_breast_cancer

    return _sklearn(load_breast_cancer, "diagnosis", "real, 569 rows, 30 correlated features, 2 classes")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def coarse() -> Dataset:
    """A Titanic-like table: 1,300 passengers described by sex, class and age decade only, so most rows repeat."""
    rng = np.random.default_rng(1)
    n = 1300
    sex = rng.choice(["male", "female"], size=n, p=[0.64, 0.36])
    pclass = rng.choice([1, 2, 3], size=n, p=[0.25, 0.21, 0.54])
    age = np.clip(rng.normal(30, 14, size=n), 0, 79) // 10 * 10  # the decade: 0, 10, ..., 70
    logit = 0.6 + 2.4 * (sex == "female") - 1.0 * (pclass - 1) + 1.2 * (age < 10) - 0.02 * age
    survived = (rng.random(n) < _sigmoid(logit - 1.2)).astype(int)
    frame = pd.DataFrame({"sex": sex, "pclass": pclass, "age": age.astype(int), "survived": survived})
    return Dataset(frame, "survived", "synthetic, 1,300 rows of 3 coarse features (48 distinct), noisy label")


def rare() -> Dataset:
    """3,000 rows of 10 numeric features, about 3% positives from a learnable but noisy score."""
    rng = np.random.default_rng(2)
    n, d = 3000, 10
    x = rng.normal(size=(n, d))
    score = 1.8 * x[:, 0] + 1.2 * x[:, 1] - 1.2 * x[:, 2] + 0.8 * x[:, 3] * x[:, 4]
    score += rng.logistic(scale=0.7, size=n)  # label noise: the classes overlap
    fraud = np.where(score > np.quantile(score, 0.97), "yes", "no")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(d)]).round(4)
    frame["fraud"] = fraud
    return Dataset(frame, "fraud", "synthetic, 3,000 rows, 3% minority class")


def missing() -> Dataset:
    """2,000 rows with ~15% of the cells missing in five columns, two of them missing not at random."""
    rng = np.random.default_rng(3)
    n = 2000
    age = rng.uniform(18, 80, n)
    income = rng.lognormal(10.5, 0.5, n)
    debt = rng.gamma(2.0, 5000.0, n)
    visits = rng.poisson(3.0, n).astype("float64")
    score = rng.normal(600, 80, n)
    tenure = rng.exponential(5.0, n)
    plan = rng.choice(["basic", "standard", "premium"], n, p=[0.5, 0.35, 0.15])
    risk = (-0.03 * (age - 50) + 1.2 * np.log(debt / income + 0.01) - 0.01 * (score - 600) + 0.25 * visits
            + 0.6 * (plan == "basic") + rng.normal(0, 0.8, n))
    outcome = np.select([risk < np.quantile(risk, 0.45), risk < np.quantile(risk, 0.8)], ["low", "mid"], "high")
    frame = pd.DataFrame({"age": age.round(0), "income": income.round(0), "debt": debt.round(0), "visits": visits,
                          "score": score.round(0), "tenure": tenure.round(2), "plan": plan, "outcome": outcome})
    # missing not at random: high incomes go unreported; many visits (a risk sign) leave the score unrecorded
    frame.loc[(income > np.quantile(income, 0.7)) & (rng.random(n) < 0.5), "income"] = np.nan
    frame.loc[(visits >= 5) & (rng.random(n) < 0.6), "score"] = np.nan
    for column in ("age", "debt", "tenure"):  # missing completely at random
        frame.loc[rng.random(n) < 0.15, column] = np.nan
    frame.loc[rng.random(n) < 0.15, "plan"] = np.nan
    return Dataset(frame, "outcome", "synthetic, 2,000 rows, ~15% missing in 6 columns (2 not at random)",
                   suffix=".parquet")


def outliers() -> Dataset:
    """Regression, 1,000 rows: a smooth price function plus heavy-tailed noise and 1% gross errors."""
    rng = np.random.default_rng(4)
    n = 1000
    x = rng.normal(size=(n, 6))
    price = 200 + 40 * x[:, 0] + 25 * x[:, 1] - 15 * x[:, 2] + 20 * np.tanh(2 * x[:, 3]) + 10 * x[:, 0] * x[:, 4]
    price += 10 * rng.standard_t(df=3, size=n)  # heavy tails: a few rows far from the trend
    gross = rng.random(n) < 0.01
    price[gross] += rng.choice([-1, 1], gross.sum()) * rng.uniform(150, 400, gross.sum())  # data-entry errors
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).round(4)
    frame["price"] = price.round(2)
    return Dataset(frame, "price", "synthetic regression, 1,000 rows, t(3) noise and 1% gross outliers")


def categories() -> Dataset:
    """2,500 rows: four text columns of 3 to 20 levels and three numeric ones; 3 classes from per-level effects."""
    rng = np.random.default_rng(5)
    n, k = 2500, 3
    names = {"colour": ["red", "green", "blue"], "channel": ["web", "shop", "phone", "partner", "fair"],
             "region": [f"region_{c}" for c in "abcdefgh"], "product": [f"item_{i:02d}" for i in range(20)]}
    logits = np.zeros((n, k))
    frame = pd.DataFrame(index=range(n))
    for column, levels in names.items():
        codes = rng.integers(0, len(levels), n)
        frame[column] = np.asarray(levels)[codes]
        logits += rng.normal(0, 1.0, size=(len(levels), k))[codes]  # each level pushes towards some classes
    numeric = rng.normal(size=(n, 3))
    logits += numeric @ rng.normal(0, 0.8, size=(3, k))
    for i in range(3):
        frame[f"n{i}"] = (numeric[:, i] * 10 + 50).round(1)
    tier = np.asarray(["basic", "plus", "premium"])[(logits + rng.gumbel(size=(n, k))).argmax(axis=1)]
    frame["tier"] = tier
    return Dataset(frame, "tier", "synthetic, 2,500 rows, 4 text columns (3-20 levels) + 3 numeric, 3 classes")


def friedman() -> Dataset:
    """Regression, 1,500 rows: Friedman's #1 function of five inputs, three noise inputs and two categories."""
    rng = np.random.default_rng(6)
    n = 1500
    x = rng.uniform(size=(n, 8))  # x5..x7 are noise
    site = rng.choice(["north", "south", "east", "west"], n)
    mode = rng.choice(["a", "b", "c"], n)
    y = 10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4]
    y += pd.Series(site).map({"north": 0.0, "south": 3.0, "east": -2.0, "west": 1.0}).to_numpy()
    y *= pd.Series(mode).map({"a": 1.0, "b": 1.2, "c": 0.8}).to_numpy()
    y += rng.normal(0, 1.0, n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)]).round(4)
    frame["site"], frame["mode"], frame["y"] = site, mode, y.round(3)
    return Dataset(frame, "y", "synthetic regression, 1,500 rows, Friedman #1 x categories, 3 noise inputs")


def gunpoint() -> Dataset:
    """UCR GunPoint in long format, as the bundled source loads it: 200 series of 150 steps, 2 classes."""
    frame = pd.read_csv(GUNPOINT).drop(columns=["ucr_split"])
    return Dataset(frame, "label", "real sequences, 200 series x 150 steps, 2 classes", "series", "step", ".parquet")


def shapes() -> Dataset:
    """300 univariate series of 60 steps: a bump, a step or a ramp at a random position, with noise."""
    rng = np.random.default_rng(7)
    n, steps = 300, 60
    t = np.arange(steps)
    kinds = np.asarray(["bump", "step", "ramp"])[np.arange(n) % 3]
    rng.shuffle(kinds)
    rows = []
    for i, kind in enumerate(kinds):
        at = rng.integers(10, 45)
        width = rng.integers(4, 10)
        if kind == "bump":
            curve = np.exp(-0.5 * ((t - at) / (width / 2)) ** 2)
        elif kind == "step":
            curve = (t >= at).astype("float64")
        else:
            curve = np.clip((t - at) / (2 * width), 0.0, 1.0)
        value = rng.uniform(0.7, 1.3) * curve + rng.normal(0, 0.25, steps) + rng.normal(0, 0.2)
        rows.append(pd.DataFrame({"id": i, "t": t, "value": value.round(4), "shape": kind}))
    frame = pd.concat(rows, ignore_index=True)
    return Dataset(frame, "shape", "synthetic sequences, 300 x 60 steps, shape at a random position", "id", "t")


def patterns() -> Dataset:
    """300 series of 7 to 29 steps with 3 features; the class is which feature rises, or a hand-over between two."""
    rng = np.random.default_rng(8)
    n = 300
    labels = np.asarray(["a_rises", "b_rises", "b_to_c"])[np.arange(n) % 3]
    rng.shuffle(labels)
    rows = []
    for i, label in enumerate(labels):
        length = int(rng.integers(7, 30))
        u = np.linspace(0, 1, length)
        x = rng.normal(0, 0.9, size=(length, 3))
        if label == "a_rises":
            x[:, 0] += 2 * u - 1
        elif label == "b_rises":
            x[:, 1] += 2 * u - 1
        else:  # b high then c high: the same totals as the others, the order carries the class
            x[:, 1] += np.where(u < 0.5, 1.0, -1.0)
            x[:, 2] += np.where(u < 0.5, -1.0, 1.0)
        rows.append(pd.DataFrame({"series": i, "step": np.arange(length), "a": x[:, 0].round(4),
                                  "b": x[:, 1].round(4), "c": x[:, 2].round(4), "label": label}))
    frame = pd.concat(rows, ignore_index=True)
    return Dataset(frame, "label", "synthetic sequences, 300 series of 7-29 steps x 3 features", "series", "step")


SUITE: dict[str, Callable[[], Dataset]] = {
    "iris": iris, "wine": wine, "breast_cancer": breast_cancer, "coarse": coarse, "rare": rare, "missing": missing,
    "outliers": outliers, "categories": categories, "friedman": friedman, "gunpoint": gunpoint, "shapes": shapes,
    "patterns": patterns,
}
SMOKE = ("iris", "outliers", "shapes")  # one each of classification, regression and sequences
