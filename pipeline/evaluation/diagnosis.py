"""What went wrong in a training run, read from its per-epoch history and final metrics, and which knobs to try.

Pure arithmetic (stdlib only) on ``models/train.json``'s history rows and ``metrics.json``'s splits, in the spirit
of a course's "issue -> solution" table: each :class:`Finding` carries the numbers it rests on and the
``params.yaml`` keys to try, most useful first. Findings come in this order; a rule whose inputs are absent is
skipped, and fewer than two epochs give no finding that needs a trend.

1. overfitting: val/loss ends >= 10% (and >= 1% of its first-epoch value) above its minimum while train/loss
   kept falling; or a wide final train-vs-val gap on the primary metric (0-1 scores: >= 0.05; r2: >= 0.15;
   mae/rmse: val >= 1.5x train). The pipeline keeps the best epoch's weights, so the advice names that epoch.
2. underfitting: the *train* primary score is no better than the best baseline's *test* score plus a margin
   (0.01 on 0-1 scores, 5% on errors), unless near-perfect (>= 0.99). Without baselines: train accuracy < 0.6
   or within 0.02 of the train split's majority-class share (from its per-class supports); train r2 < 0.1.
3. vanishing_gradients, judged across depth, not over time (every norm falls by orders of magnitude as a model
   converges): a layer whose gradient norm is a median < 1e-3 of the output layer's over the epochs; or a layer
   whose norm fell >= 1e3x while train/loss stayed >= 50% of its first value (it stopped without converging).
4. exploding_gradients: a median ratio to the output layer > 1e3; a norm >= 1e3x its first-epoch value, that
   value floored at the median first-epoch norm of all layers (a layer that starts vanished and recovers is not
   exploding); or a non-finite norm.
5. dead_relu (ReLU nets only): a layer with >= 50% of its units never active at the last epoch.
6. diverged: train/loss ended >= 10% above its first value, or jumped >= 10x over its running minimum back to
   >= 50% of its first value, or a loss was non-finite.
7. unstable_validation: over the second half of training (at least 6 epochs in all), val/loss typically
   (median) moves by 1.5x or more from one epoch to the next, at least twice as much as train/loss does: the
   best epoch is then picked on noise.

Layers are the ``grad_norm/<parameter>`` keys in the order they first appear: network order, output layer last.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

OVERFIT_REL_RISE = 0.10  # val/loss 10% over its minimum: beyond the epoch-to-epoch wobble of a settled run...
OVERFIT_ABS_RISE = 0.01  # ...and by 1% of its first value: a converged 2.3e-6 -> 2.9e-6 is float noise, no trend
GAP_SCORE = 0.05  # 5 points of accuracy / F1 between train and val: more than sampling noise on a val split
GAP_R2 = 0.15  # r2 swings more than accuracy on small val splits
GAP_ERROR_RATIO = 1.5  # val error 1.5x train error: the net knows the rows it saw far better than new ones
UNDERFIT_MARGIN = 0.01  # 0-1 scores: a net should fit its own train rows better than a simple model predicts new ones
UNDERFIT_REL_MARGIN = 0.05  # errors are in target units, so the margin is relative: 5% below the best baseline
UNDERFIT_CEILING = 0.99  # a near-perfect train score has nothing left to fit, even when a baseline ties it
UNDERFIT_ACCURACY = 0.6  # without baselines: barely better than a coin on two classes...
UNDERFIT_MAJORITY_MARGIN = 0.02  # ...or hardly better than always answering the majority class
UNDERFIT_R2 = 0.1  # without baselines: explains almost none of the target's variance
VANISH_RATIO = 1e-3  # three orders of magnitude below the output layer: those weights barely move
EXPLODE_RATIO = 1e3  # three orders above the output layer
TIME_FACTOR = 1e3  # a norm that moved 1000x over training (for any layer against its own first epoch)
STALLED_LOSS = 0.5  # train/loss still >= half its first value: the fall in norms is not convergence
DEAD_SHARE = 0.5  # half a layer's units never fire: half its width is wasted and gets no gradient
DIVERGE_FINAL = 1.1  # ended 10% above the start: a stuck, flat loss wobbles by less (that is underfitting)
DIVERGE_JUMP = 10.0  # a 10x jump over the best so far is a blow-up, not mini-batch noise...
DIVERGE_JUMP_LEVEL = 0.5  # ...back to half the first loss: a healthy run at 7e-6 spiked 8000x, but only to 0.06
UNSTABLE_SWING = math.log(1.5)  # val/loss typically 1.5x up or down each epoch: noise larger than progress
UNSTABLE_RELATIVE = 2.0  # ...and twice train's swing: the instability is in what val sees, not the whole run
UNSTABLE_MIN_EPOCHS = 6  # the second half needs a few epochs for a median to mean anything
SCORES = ("accuracy", "macro_f1", "balanced_accuracy", "r2")  # higher is better; mae, rmse, log_loss are errors
KNOBS = {  # per kind, the params.yaml keys to try (most useful first) and what to do with them
    "overfitting": (("model.dropout", "train.weight_decay", "train.augment", "train.early_stopping.patience",
                     "model.hidden"),
                    "regularise: raise model.dropout or train.weight_decay, add train.augment noise (flip/shift for "
                    "images), lower train.early_stopping.patience, or make model.hidden smaller"),
    "underfitting": (("model.hidden", "train.max_epochs", "train.lr", "model.dropout", "train.weight_decay",
                      "train.optimizer"),
                     "add capacity and time: widen or deepen model.hidden, raise train.max_epochs, retune train.lr, "
                     "lower model.dropout and train.weight_decay, or try train.optimizer: adam"),
    "vanishing_gradients": (("model.init", "model.norm", "model.activation", "train.lr"),
                            "set model.init: kaiming_normal, add model.norm: batch, try model.activation: "
                            "leaky_relu, then retune train.lr"),
    "exploding_gradients": (("train.gradient_clip.mode", "train.gradient_clip.max", "train.lr", "model.init",
                             "model.norm"),
                            "set train.gradient_clip.mode: norm with train.gradient_clip.max: 1.0, lower train.lr "
                            "(e.g. by 10x), and try a scaled model.init or model.norm: batch"),
    "dead_relu": (("model.activation", "train.lr", "model.init"),
                  "use model.activation: leaky_relu (it keeps a gradient below zero), lower train.lr so fewer units "
                  "are knocked dead, and use model.init: kaiming_normal"),
    "diverged": (("train.lr", "train.lr_find", "train.schedule.kind", "train.schedule.warmup_epochs",
                  "train.gradient_clip.mode"),
                 "the learning rate is too high: divide train.lr by 10 or set train.lr_find: true for a suggestion, "
                 "warm up with train.schedule.kind (step or cosine) and train.schedule.warmup_epochs, and set "
                 "train.gradient_clip.mode: norm"),
    "unstable_validation": (("train.lr", "train.schedule.kind", "train.batch_size", "model.cnn.batch_norm",
                             "model.norm", "split.val", "train.early_stopping.patience"),
                            "lower train.lr or let it decay (train.schedule.kind: cosine or plateau); a larger "
                            "train.batch_size steadies batch-norm statistics (or turn model.cnn.batch_norm / "
                            "model.norm off); a larger split.val makes the val/loss that picks the kept epoch less "
                            "noisy"),
}
# sigmoid / tanh saturate: the activation itself is the first thing to change
SATURATING = (("model.activation", "model.init", "model.norm", "train.lr"),
              "switch model.activation to relu or leaky_relu with model.init: kaiming_normal (or keep it with "
              "model.init: xavier_normal), add model.norm: batch, then retune train.lr")


@dataclass(frozen=True)
class Finding:
    """One problem seen in a run: its ``kind``, the evidence, and which ``params.yaml`` keys to try."""

    kind: str
    summary: str
    knobs: tuple[str, ...]
    advice: str
    evidence: dict[str, float | int | str]


def _finding(kind: str, parts: list[str], evidence: dict, extra: str = "", entry: tuple | None = None) -> Finding:
    keys, advice = entry or KNOBS[kind]  # entry: (knobs, advice) other than the kind's own
    return Finding(kind, "; ".join(parts), keys, advice + extra, evidence)


def _ok(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _f(x: float) -> str:
    return f"{x:.3g}"


def _epoch(row: dict, index: int) -> int:
    return int(row["epoch"]) if _ok(row.get("epoch")) else index  # the row's place when unrecorded


def _rows(history: list[dict], *keys: str) -> list[dict]:
    """The rows where every key holds a finite number, each with its ``epoch``."""
    return [{"epoch": _epoch(r, i), **{k: r[k] for k in keys}}
            for i, r in enumerate(history) if all(_ok(r.get(k)) for k in keys)]


def _nonfinite(history: list[dict], keys: list[str]) -> tuple[str, float, int] | None:
    """The first (key, value, epoch) holding inf or NaN."""
    return next(((k, r[k], _epoch(r, i)) for i, r in enumerate(history) for k in keys
                 if isinstance(r.get(k), float) and not math.isfinite(r[k])), None)


def _metric(metrics: dict, split: str, name: str) -> float | None:
    value = (metrics.get(split) or {}).get(name)
    return float(value) if _ok(value) else None


def _overfitting(history: list[dict], metrics: dict, primary: str) -> Finding | None:
    parts, ev, saved = [], {}, ""
    if len(rows := _rows(history, "train/loss", "val/loss")) >= 2:
        best, first, last = min(rows, key=lambda r: r["val/loss"]), rows[0], rows[-1]
        ev.update(min_epoch=best["epoch"], min_val_loss=best["val/loss"], final_val_loss=last["val/loss"],
                  train_loss_at_min=best["train/loss"], final_train_loss=last["train/loss"])
        saved = f"; the saved model is epoch {best['epoch']}'s (the pipeline keeps the best epoch's weights)"
        rise = last["val/loss"] - best["val/loss"]
        if (rise >= OVERFIT_REL_RISE * best["val/loss"] and rise >= OVERFIT_ABS_RISE * first["val/loss"]
                and last["train/loss"] < best["train/loss"]):
            parts.append(f"val/loss fell to {_f(best['val/loss'])} at epoch {best['epoch']}, then rose to "
                         f"{_f(last['val/loss'])} by epoch {last['epoch']} while train/loss kept falling "
                         f"({_f(best['train/loss'])} -> {_f(last['train/loss'])})")
    train, val = _metric(metrics, "train", primary), _metric(metrics, "val", primary)
    if train is not None and val is not None:
        ev.update(train_primary=train, val_primary=val)
        if primary in ("mae", "rmse"):
            wide = val > train and val >= GAP_ERROR_RATIO * train
        else:
            wide = train - val >= (GAP_R2 if primary == "r2" else GAP_SCORE)
        if wide or parts:
            parts.append(f"train {primary} {train:.3f} vs val {val:.3f}")
    return _finding("overfitting", parts, ev, saved) if parts else None


def _underfitting(metrics: dict, primary: str, task: str, baselines: dict | None) -> Finding | None:
    train, higher = _metric(metrics, "train", primary), primary in SCORES
    scored = {n: float(b[primary]) for n, b in (baselines or {}).items() if isinstance(b, dict) and _ok(b.get(primary))}
    if train is not None and scored:
        name = (max if higher else min)(scored, key=scored.__getitem__)
        best = scored[name]
        if not (train <= best + UNDERFIT_MARGIN and train < UNDERFIT_CEILING if higher
                else train >= best * (1 - UNDERFIT_REL_MARGIN) and train > 0):
            return None
        return _finding("underfitting", [f"train {primary} {train:.3f} is no better than the {name} baseline's test "
                                         f"{primary} {best:.3f}: the network fits its own train rows no better than "
                                         "a simple model predicts unseen ones"],
                        {"metric": primary, "train_value": train, "baseline": name, "baseline_value": best})
    if task == "classification" and (acc := _metric(metrics, "train", "accuracy")) is not None:
        per_class = (metrics.get("train") or {}).get("per_class") or {}
        supports = [c["support"] for c in per_class.values() if isinstance(c, dict) and _ok(c.get("support"))]
        share = max(supports) / sum(supports) if supports and sum(supports) > 0 else None
        near = share is not None and acc <= share + UNDERFIT_MAJORITY_MARGIN
        if near or acc < UNDERFIT_ACCURACY:
            why = f"within {UNDERFIT_MAJORITY_MARGIN} of the majority class's share {share:.3f}" if near else \
                f"below {UNDERFIT_ACCURACY}"
            return _finding("underfitting", [f"train accuracy {acc:.3f} is {why}"],
                            {"metric": "accuracy", "train_value": acc} | ({"majority_share": share} if near else {}))
    if task != "classification" and (r2 := _metric(metrics, "train", "r2")) is not None and r2 < UNDERFIT_R2:
        return _finding("underfitting", [f"train r2 {r2:.3f} is below {UNDERFIT_R2}: the network explains almost "
                                         "none of the target on its own train rows"],
                        {"metric": "r2", "train_value": r2})
    return None


def _gradients(history: list[dict], activation: str) -> tuple[Finding | None, Finding | None]:
    """(vanishing, exploding) from the ``grad_norm/*`` keys."""
    layers = list(dict.fromkeys(k for r in history for k in r if k.startswith("grad_norm/")))
    if not layers:
        return None, None
    out, name = layers[-1], (lambda k: k.removeprefix("grad_norm/"))
    ratios = {k: statistics.median(rs) for k in layers[:-1]
              if (rs := [r[k] / r[out] for r in _rows(history, k, out) if r[out] > 0])}
    low = {k: v for k, v in ratios.items() if v < VANISH_RATIO}
    high = {k: v for k, v in ratios.items() if v > EXPLODE_RATIO}
    series = {k: rows for k in layers if len(rows := _rows(history, k)) >= 2}
    floor = statistics.median(rows[0][k] for k, rows in series.items()) if series else 0.0
    loss = _rows(history, "train/loss")
    stalled = len(loss) >= 2 and loss[-1]["train/loss"] >= STALLED_LOSS * loss[0]["train/loss"]
    fell = [(k, rows[0][k], rows[-1][k]) for k, rows in series.items()
            if stalled and rows[-1][k] * TIME_FACTOR <= rows[0][k]]
    peaks = {k: max(rows, key=lambda r: r[k]) for k, rows in series.items()}
    grew = {k: p[k] / max(series[k][0][k], floor) for k, p in peaks.items()
            if p[k] >= TIME_FACTOR * max(series[k][0][k], floor) > 0}
    bad = _nonfinite(history, layers)
    vanishing = exploding = None
    if low or fell:
        parts, ev = [], {}
        if low:
            worst = min(low, key=low.__getitem__)
            parts.append(f"median gradient norm relative to the output layer ({name(out)}): "
                         + ", ".join(f"{name(k)} {_f(v)}" for k, v in low.items()))
            ev.update(layers=",".join(map(name, low)), worst_layer=name(worst), median_ratio=low[worst])
        if fell:
            k, a, z = fell[0]
            first, last = loss[0]["train/loss"], loss[-1]["train/loss"]
            parts.append(f"{name(k)}'s gradient norm fell {_f(a / z) if z > 0 else 'inf'}x ({_f(a)} -> {_f(z)}) "
                         f"while train/loss only went {_f(first)} -> {_f(last)}")
            ev.update(stalled_layer=name(k), first_norm=a, last_norm=z, first_train_loss=first, last_train_loss=last)
        vanishing = _finding("vanishing_gradients", parts, ev,
                             entry=SATURATING if activation in ("sigmoid", "tanh") else None)
    if bad or grew or high:
        parts, ev = [], {}
        if bad:
            parts.append(f"{name(bad[0])}'s gradient norm was {bad[1]} at epoch {bad[2]}")
            ev.update(layer=name(bad[0]), max_norm=str(bad[1]), epoch=bad[2])
        if grew:
            k = max(grew, key=grew.__getitem__)
            peak, epoch = peaks[k][k], peaks[k]["epoch"]
            parts.append(f"{name(k)}'s gradient norm grew {_f(grew[k])}x to {_f(peak)} at epoch {epoch}")
            ev = {"layer": name(k), "max_norm": peak, "growth": grew[k], "epoch": epoch, **ev}
        if high:
            k = max(high, key=high.__getitem__)
            parts.append(f"{name(k)}'s gradient norm is a median {_f(high[k])}x the output layer's ({name(out)})")
            ev.update(ratio_layer=name(k), median_ratio=high[k])
        exploding = _finding("exploding_gradients", parts, ev)
    return vanishing, exploding


def _dead_relu(history: list[dict], activation: str) -> Finding | None:
    at = next((i for i in reversed(range(len(history))) if any(k.startswith("dead_relu/") for k in history[i])), None)
    if activation != "relu" or at is None:
        return None
    dead = {k.removeprefix("dead_relu/"): float(v) for k, v in history[at].items()
            if k.startswith("dead_relu/") and _ok(v) and v >= DEAD_SHARE}
    if not dead:
        return None
    worst, epoch = max(dead, key=dead.__getitem__), _epoch(history[at], at)
    more = f" ({len(dead)} layers at >= {DEAD_SHARE:.0%}: {', '.join(dead)})" if len(dead) > 1 else ""
    return _finding("dead_relu", [f"{dead[worst]:.0%} of {worst}'s ReLU units never fired at epoch {epoch}{more}"],
                    {"layer": worst, "share": dead[worst], "layers": len(dead), "epoch": epoch})


def _diverged(history: list[dict]) -> Finding | None:
    rows, text, ev = _rows(history, "train/loss"), None, {}
    if bad := _nonfinite(history, ["train/loss", "val/loss"]):
        text, ev = f"{bad[0]} became {bad[1]} at epoch {bad[2]}", {"loss": str(bad[1]), "epoch": bad[2]}
    elif len(rows) >= 2:
        first = best = rows[0]["train/loss"]
        for r in rows[1:]:
            if (v := r["train/loss"]) >= DIVERGE_JUMP * best and v >= DIVERGE_JUMP_LEVEL * first:
                text = (f"train/loss jumped to {_f(v)} at epoch {r['epoch']}, {_f(v / best)}x its best so far "
                        f"({_f(best)})")
                ev = {"epoch": r["epoch"], "loss": v, "best_loss": best, "first_loss": first}
                break
            best = min(best, v)
        if text is None and (last := rows[-1]["train/loss"]) >= DIVERGE_FINAL * first:
            peak = max(rows, key=lambda r: r["train/loss"])
            text = (f"train/loss ended at {_f(last)}, above its first-epoch {_f(first)} (peak {_f(peak['train/loss'])} "
                    f"at epoch {peak['epoch']})")
            ev = {"epoch": peak["epoch"], "loss": peak["train/loss"], "first_loss": first, "final_loss": last}
    if text is None:
        return None
    rate = next((float(r["lr"]) for i, r in enumerate(history)
                 if _epoch(r, i) == ev["epoch"] and _ok(r.get("lr"))), None)
    if rate is not None:
        text, ev["lr"] = f"{text}, with lr {_f(rate)}", rate
    keys, advice = KNOBS["diverged"]
    if rate:
        advice = advice.replace("by 10", f"by 10 ({_f(rate)} -> {_f(rate / 10)})", 1)
    return _finding("diverged", [text], ev, entry=(keys, advice))


def _swing(values: list[float]) -> float:
    """The median factor (as a log) by which consecutive values differ."""
    return statistics.median(abs(math.log(b / a)) for a, b in zip(values, values[1:]))


def _unstable(history: list[dict], task: str) -> Finding | None:
    rows = [r for r in _rows(history, "train/loss", "val/loss") if r["train/loss"] > 0 and r["val/loss"] > 0]
    if len(rows) < UNSTABLE_MIN_EPOCHS:
        return None
    late = rows[len(rows) // 2:]
    val, train = _swing([r["val/loss"] for r in late]), _swing([r["train/loss"] for r in late])
    if val < UNSTABLE_SWING or val < UNSTABLE_RELATIVE * train:
        return None
    low, high = min(r["val/loss"] for r in late), max(r["val/loss"] for r in late)
    first, last = late[0]["epoch"], late[-1]["epoch"]
    parts = [f"over epochs {first}-{last} val/loss moved by a median {_f(math.exp(val))}x from one epoch to the "
             f"next (between {_f(low)} and {_f(high)}), train/loss by {_f(math.exp(train))}x"]
    ev: dict[str, float | int | str] = {"from_epoch": first, "to_epoch": last, "val_swing": math.exp(val),
                                        "train_swing": math.exp(train), "val_loss_min": low, "val_loss_max": high}
    metric = "val/acc" if task == "classification" else "val/mae"
    if scores := [float(r[metric]) for r in history[len(history) - len(late):] if _ok(r.get(metric))]:
        parts.append(f"{metric} ranged {_f(min(scores))}-{_f(max(scores))}")
        ev.update({f"{metric}_min": min(scores), f"{metric}_max": max(scores)})
    return _finding("unstable_validation", parts, ev)


def diagnose(history: list[dict[str, float]], task: str, metrics: dict[str, dict], primary: str,
             baselines: dict[str, dict] | None = None, activation: str = "relu") -> list[Finding]:
    """A run's problems, in the module docstring's order (empty when it looks healthy).

    Args:
        history: per-epoch rows as in ``models/train.json``; any key may be missing from any row.
        task: ``classification`` or ``regression``.
        metrics: per split (``train``, ``val``, ``test``) its metrics, as in ``metrics.json``.
        primary: the primary metric (accuracy, macro_f1, mae, rmse or r2).
        baselines: per baseline its test metrics, or None.
        activation: ``model.activation``: dead units are looked for under ReLU only, and it picks the advice on
            vanishing gradients.
    """
    history = [r for r in history or [] if isinstance(r, dict)]
    metrics, activation = metrics or {}, (activation or "").lower()
    vanishing, exploding = _gradients(history, activation)
    found = (_overfitting(history, metrics, primary), _underfitting(metrics, primary, task, baselines), vanishing,
             exploding, _dead_relu(history, activation), _diverged(history), _unstable(history, task))
    return [f for f in found if f is not None]


def report(findings: list[Finding], title: str, history: list[dict[str, float]], metrics: dict[str, dict],
           primary: str) -> str:
    """A short plain-text diagnosis: the run in two lines, then each finding with the knobs to try."""
    history, metrics = history or [], metrics or {}
    head = f"trained {len(history)} epochs"
    if val := _rows(history, "val/loss"):
        head += f", best epoch {min(val, key=lambda r: r['val/loss'])['epoch']}"
    curves = [f"{k} {rows[0][k]:.4f} -> {rows[-1][k]:.4f}" for k in ("train/loss", "val/loss")
              if (rows := _rows(history, k))]
    scores = [f"{s} {v:.4f}" if (v := _metric(metrics, s, primary)) is not None else f"{s} n/a"
              for s in ("train", "val", "test")]
    lines = [f"Diagnosis: {title}", "  " + "; ".join([head, ", ".join(curves)] if curves else [head]),
             f"  {primary}: " + ", ".join(scores)]
    for f in findings:
        lines += [f"  - {f.kind}: {f.summary}", f"      try: {', '.join(f.knobs)} — {f.advice}"]
    if not findings:
        seen = {k.split("/")[0] for r in history for k in r}
        checked = ["overfitting", "underfitting"] + ["vanishing and exploding gradients"] * ("grad_norm" in seen)
        checked += ["dead ReLU units"] * ("dead_relu" in seen) + ["divergence", "unstable validation"]
        lines.append("  no problems found: checked " + ", ".join(checked))
    return "\n".join(lines) + "\n"


def as_json(findings: list[Finding]) -> list[dict]:
    """The findings as JSON-ready dicts: knobs as lists, a non-finite number as its text (``"nan"``, ``"inf"``)."""
    def plain(v: float | int | str) -> float | int | str:
        return repr(v) if isinstance(v, float) and not math.isfinite(v) else v
    return [asdict(f) | {"knobs": list(f.knobs), "evidence": {k: plain(v) for k, v in f.evidence.items()}}
            for f in findings]
