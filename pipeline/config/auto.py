"""What each ``auto`` in ``params.yaml`` becomes: by the data's modality as the file is read, by the task once ingest
has inferred it.

The choices were measured on the defaults suite (``benchmarks/quality.py --defaults``, datasets the project never
tuned on; the README has the table): a feed-forward net for tables; for sequences a fully convolutional network
(kernel 7, no pooling, no dense head: global average pooling straight into the output layer, as in Wang et al.,
2017, "Time series classification from scratch with deep neural networks") beat the image-shaped CNN (kernel 3, 2x
max pooling, a [64, 32] head) by 0.13-0.35 test accuracy and a GRU on the longest series; images keep the CNN that
the digits preset measured (kernel 3, max pooling, no head).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config.training import TrainConfig

# by the modality ingest will see (known from data.source and data.sequence alone, so settled when params are read)
BY_MODALITY: dict[str, dict[str, Any]] = {
    "model.kind": {"tabular": "fnn", "image": "cnn", "sequence": "cnn"},
    "model.cnn.kernel": {"tabular": 3, "image": 3, "sequence": 7},
    "model.cnn.pool": {"tabular": "max", "image": "max", "sequence": "none"},
}
# by the network kind: a feed-forward net's hidden layers are its capacity; after a convolutional or recurrent
# encoder, a dense head only adds parameters to overfit with (measured: gunpoint 0.78 with [64, 32], 0.93 without)
# train.weight_decay: a feed-forward net's stays 'auto', sized by the train rows (:func:`weight_decay`); a
# convolutional or recurrent net's is 0 (measured: GunPoint's FCN 1.000 without, 0.950 with 1 / train rows)
BY_KIND: dict[str, dict[str, Any]] = {
    "model.hidden": {"fnn": [64, 32], "cnn": [], "rnn": []},
    "train.weight_decay": {"cnn": 0.0, "rnn": 0.0},
}
# by the task, once known (see :func:`pipeline.config.resolve`): accuracy is what a first comparison with a
# baseline reads and r2 is scale-free; no resampling, since it moves the decision that accuracy judges
BY_TASK: dict[str, dict[str, str]] = {
    "classification": {"evaluate.primary_metric": "accuracy", "clean.imbalance": "none"},
    "regression": {"evaluate.primary_metric": "r2", "clean.imbalance": "none"},
}


# Training length by the data's size, in optimizer steps rather than epochs: an epoch of a 100-row table is 4
# steps and one of a 100,000-row table 3,000, so "200 epochs, patience 20" gives the first 800 steps to learn
# and 80 of grace, too few for a network that learns slowly on little data (GunPoint's 130 series: the default
# FCN stopped at 200 epochs still improving, 0.925; given 500 epochs with patience 50, 1.000), and the second
# more than it needs. So at least STEPS steps and PATIENCE_STEPS of patience, never under the epoch floors that
# larger tables measured well with (200 and 20), and never over MAX_EPOCHS.
STEPS = 4000
PATIENCE_STEPS = 400
MIN_EPOCHS, MIN_PATIENCE, MAX_EPOCHS = 200, 20, 5000
# train.checkpoint_every: auto saves last.ckpt every CHECKPOINT_STEPS optimizer steps' worth of epochs, and at least
# CHECKPOINT_SAVES times over max_epochs, so a SIGKILL loses at most that many steps or a tenth of the training.
# A save of a small network costs about as much as a penguins epoch (2-5 ms: the training state, the history so
# far, a file and a rename), so saving every epoch cost a quarter of the fit (benchmarks/train_throughput.py's
# small case); one save per CHECKPOINT_STEPS steps stays within a few percent, and for a large table (hundreds of
# steps an epoch) it is every epoch, as before.
CHECKPOINT_STEPS = 500
CHECKPOINT_SAVES = 10


def budget(train: TrainConfig, n_rows: int) -> TrainConfig:
    """``train`` with ``max_epochs``, ``early_stopping.patience``, ``weight_decay`` and ``checkpoint_every`` at
    ``auto`` sized for ``n_rows`` train rows.

    Args:
        train: The train section (values set by hand are kept).
        n_rows: Train rows (or series, or images) one epoch walks.
    """
    steps = math.ceil(max(n_rows, 1) / train.rows_per_step(n_rows))  # optimizer steps per epoch
    max_epochs = train.max_epochs
    if max_epochs == "auto":
        max_epochs = min(max(MIN_EPOCHS, math.ceil(STEPS / steps)), MAX_EPOCHS)
    stop = train.early_stopping
    if stop.patience == "auto":
        stop = stop.model_copy(update={"patience": min(max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / steps)),
                                                       max_epochs)})
    decay = train.weight_decay
    if decay == "auto":
        decay = weight_decay(n_rows)
    every = train.checkpoint_every
    if every == "auto":
        every = min(math.ceil(CHECKPOINT_STEPS / steps), max(max_epochs // CHECKPOINT_SAVES, 1))
    return train.model_copy(update={"max_epochs": max_epochs, "early_stopping": stop, "weight_decay": decay,
                                    "checkpoint_every": every})


def weight_decay(n_rows: int) -> float:
    """The L2 penalty ``weight_decay: auto`` gives a net trained on ``n_rows`` rows: ``1 / n_rows``.

    That is the penalty of scikit-learn's default logistic regression (``C=1``) per row: its objective,
    ``sum(log loss) + ||w||^2 / 2``, divided by the rows to match a mean loss, has the gradient
    ``mean(...) + w / n_rows``, which is what ``weight_decay = 1 / n_rows`` adds. A fixed penalty cannot fit every
    size: on 100 rows an unpenalised net drives its train loss to zero within a few epochs and early stopping then
    picks an over-confident net from a noisy validation loss (measured: iris 0.967 and wine 0.972 against 1.000
    for the baselines, both 1.000 with this penalty), while on 10,000 rows the same data would need 100 times less.
    """
    return 1.0 / max(n_rows, 1)


def _get(raw: dict, dotted: str) -> Any:
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(raw: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[leaf] = value


def settle(raw: dict, modality: str) -> tuple[dict, dict[str, Any]]:
    """``raw`` params with the ``auto`` values that follow the modality (and the network kind) settled.

    ``model.cnn.padding: auto`` becomes ``kernel // 2``: "same" padding, so every block keeps the length of its
    input and a short series is never convolved away.

    Args:
        raw: The params document as loaded (not changed).
        modality: ``tabular``, ``image`` or ``sequence``.

    Returns:
        A copy with those values settled, and each settled dotted key with its value.
    """
    import copy

    out, settled = copy.deepcopy(raw), {}
    for dotted, table in BY_MODALITY.items():
        if _get(out, dotted) == "auto":
            settled[dotted] = table[modality]
            _set(out, dotted, table[modality])
    kind = _get(out, "model.kind")
    for dotted, table in BY_KIND.items():
        if _get(out, dotted) == "auto" and kind in table:
            settled[dotted] = table[kind]
            _set(out, dotted, copy.deepcopy(table[kind]))
    kernel = _get(out, "model.cnn.kernel")
    if _get(out, "model.cnn.padding") == "auto" and isinstance(kernel, int) and not isinstance(kernel, bool):
        settled["model.cnn.padding"] = kernel // 2
        _set(out, "model.cnn.padding", kernel // 2)
    return out, settled
