"""How far a test score can be trusted: 95 % intervals from a bootstrap that resamples whole tracks.

A test split of a few dozen tracks gives a track accuracy that moves by many points from one draw of
tracks to the next, and the clips of one track are not independent draws: they share the song, the
mix and the artist. Resampling clips would make clip-level intervals far too narrow, so every
replicate draws *tracks* with replacement and takes all their clips along (a cluster bootstrap);
clip- and track-level metrics are recomputed on each replicate from weights, without copying data.
The metrics are the training module's (accuracy, macro and weighted precision/recall/F1, macro
ROC-AUC and PR-AUC), written again in NumPy so that a thousand replicates take a moment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from metalcore.scoring.pooling import pool_tracks

RESAMPLES = 1000
LEVEL = 0.95
SUFFIX = "_ci95"  # metrics.json: "acc": 0.93, "acc_ci95": [0.84, 1.0]
CHUNK = 100  # replicates computed together: bounds memory on libraries with many clips


def _ranked_auc_ap(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ROC-AUC and average precision of one class for each row of ``weights`` ``(B, N)``.

    Tied scores form one threshold (ROC ties count a half, as the Mann-Whitney statistic does; average
    precision steps at each distinct score, as torchmetrics and scikit-learn define it).
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)  # (B, groups), descending score
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    p_total, n_total = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        neg_below = n_total[:, None] - np.cumsum(neg, axis=1)  # negatives scored lower than the group
        auc = (pos * (neg_below + 0.5 * neg)).sum(1) / (p_total * n_total)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos * precision).sum(1) / p_total
    return auc, ap


def weighted_scores(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each weighting of the items: ``probs (N, K)``, ``labels (N,)``, ``weights (B, N)`` -> ``(B,)``.

    A weight is how many times an item is in a replicate; all ones gives the plain score. Macro
    averages leave out classes neither present nor predicted (as torchmetrics does); ROC-AUC and
    PR-AUC are NaN when a class is absent from the replicate.
    """
    num_classes = probs.shape[1]
    truth = labels[:, None] == np.arange(num_classes)  # (N, K)
    predicted = probs.argmax(1)[:, None] == np.arange(num_classes)
    tp = weights @ (truth & predicted)  # (B, K)
    support, called = weights @ truth, weights @ predicted
    total = weights.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = {
            "precision": np.where(called > 0, tp / called, 0.0),
            "recall": np.where(support > 0, tp / support, 0.0),
            "f1": np.where(support + called > 0, 2 * tp / (support + called), 0.0),
        }
        seen = (support + called) > 0
        scores = {"acc": tp.sum(1) / total}
        for name, values in per_class.items():
            scores[name] = (values * seen).sum(1) / seen.sum(1)
        for name, values in per_class.items():
            scores[f"{name}_weighted"] = (values * support).sum(1) / support.sum(1)
        ranked = [_ranked_auc_ap(probs[:, k], truth[:, k], weights) for k in range(num_classes)]
        absent = (support == 0).any(1)
        for i, name in enumerate(("auroc", "pr_auc")):
            values = np.mean([r[i] for r in ranked], axis=0)
            scores[name] = np.where(absent, np.nan, values)
    return scores


def percentile_interval(values: np.ndarray, units: int, level: float = LEVEL) -> list[float] | None:
    """The central ``level`` share of the finite replicate values; None when none is finite.

    A perfect score (or a zero) on every replicate leaves the bootstrap nothing to resample: it would
    claim ``[1, 1]`` from four tracks. The interval is then the exact binomial (Clopper-Pearson) one
    for ``units`` successes out of ``units`` (``[(alpha/2) ** (1/n), 1]``), as for an accuracy over
    the tracks: 12 tracks all right still allow a true accuracy of 0.74.
    """
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2
    low, high = np.percentile(values, [100 * tail, 100 * (1 - tail)])
    if low == high == 1.0:
        return [float(tail ** (1 / units)), 1.0]
    if low == high == 0.0:
        return [0.0, float(1 - tail ** (1 / units))]
    return [float(low), float(high)]


def ranking_auc(
    scores: np.ndarray, positive: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, list[float] | None]:
    """How well one score per track (e.g. a pretrained tagger's "metal") tells ``positive`` tracks from
    the rest: ROC-AUC with its ``level`` interval from resampling the tracks. NaN without both kinds."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n = len(scores)
    if positive.all() or not positive.any():
        return math.nan, None
    auc = float(_ranked_auc_ap(scores, positive, np.ones((1, n)))[0][0])
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    replicates = np.concatenate(
        [_ranked_auc_ap(scores, positive, counts[i : i + CHUNK])[0] for i in range(0, resamples, CHUNK)]
    )
    return auc, percentile_interval(replicates, n, level)


def track_intervals(
    clip_probs: np.ndarray,
    clip_labels: np.ndarray,
    clip_tracks: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict[str, list[float] | None]]:
    """``{"clip": {metric: [low, high]}, "track": {...}}`` from one cluster bootstrap over tracks.

    Each replicate draws as many tracks as there are, with replacement; a track drawn twice counts
    its clips twice at clip level and itself twice at track level. Track probabilities are the mean
    of their clips' probabilities, as everywhere in metalcore. Seeded: the same inputs and seed give
    the same intervals.
    """
    track_probs, track_labels, inverse = pool_tracks(clip_probs, clip_labels, clip_tracks)
    n = len(track_labels)
    rng = np.random.default_rng(seed)
    replicates: dict[str, dict[str, list[np.ndarray]]] = {"clip": {}, "track": {}}
    for first in range(0, resamples, CHUNK):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(CHUNK, resamples - first)).astype(float)
        for level_name, scores in (
            ("track", weighted_scores(track_probs, track_labels, counts)),
            ("clip", weighted_scores(clip_probs, clip_labels, counts[:, inverse])),
        ):
            for name, values in scores.items():
                replicates[level_name].setdefault(name, []).append(values)
    return {
        level_name: {name: percentile_interval(np.concatenate(parts), n, level) for name, parts in metrics.items()}
        for level_name, metrics in replicates.items()
    }


def with_intervals(results: Mapping[str, Mapping], intervals: Mapping[str, Mapping]) -> dict[str, dict]:
    """``results`` (``{"clip": {"acc": 0.9, ...}, "track": ...}``) with ``<metric>_ci95`` after each scored value."""
    out: dict[str, dict] = {}
    for level_name, scores in results.items():
        out[level_name] = {}
        for name, value in scores.items():
            out[level_name][name] = value
            if name in intervals.get(level_name, {}):
                out[level_name][name + SUFFIX] = intervals[level_name][name]
    return out


def formatted(value: float | None, interval: list[float] | None) -> str:
    """``0.9300 [0.8400, 1.0000]``: a value and its interval, as the log, evaluate and the report print them;
    ``n/a`` where the tracks given do not define the score (e.g. AUROC on one class)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"
