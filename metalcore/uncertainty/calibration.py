"""Confidences that mean what they say: expected calibration error, reliability diagrams, a temperature.

A network trained with cross-entropy is usually over-confident: it says 0.99 where it is right eight
times in ten. One temperature ``T`` divides every clip's logits (``softmax(z / T)``; from
probabilities, ``softmax(log p / T)``); a track's probability stays the mean of its clips'. ``T``
is fitted after training on the validation tracks by minimising the negative log-likelihood of their
pooled probabilities (Guo et al. 2017, "On calibration of modern neural networks"), stored in the
best checkpoint (``checkpoint["calibration"]``), and applied by every ``Classifier`` loaded from it:
predict, evaluate and export. The expected calibration error (ECE) is the gap between confidence
and accuracy averaged over equal-width confidence bins, weighted by how many predictions fall in each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metalcore.core.files import atomic_file
from metalcore.scoring.pooling import pool_tracks

BINS = 15
TEMPERATURES = np.geomspace(0.05, 20.0, 481)  # the search grid: 2.6 % steps over 0.05 to 20


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)`` along the last axis: the logits divided by ``T``, from probabilities.

    ``temper(temper(p, T), 1 / T)`` gives ``p`` back, so the raw probabilities can be recovered.
    """
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def track_nll(clip_probs: np.ndarray, clip_labels: np.ndarray, clip_tracks: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the tracks' pooled probabilities after tempering every clip."""
    probs, labels, _ = pool_tracks(temper(clip_probs, temperature), clip_labels, clip_tracks)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(clip_probs: np.ndarray, clip_labels: np.ndarray, clip_tracks: np.ndarray) -> float | None:
    """The ``T`` on the grid that minimises the pooled tracks' NLL; None when the minimum is at an end
    of the grid: with every validation track right by a margin, the loss keeps falling as ``T`` -> 0
    and no temperature is identified (sharpening without limit would be fitting the noise)."""
    losses = [track_nll(clip_probs, clip_labels, clip_tracks, t) for t in TEMPERATURES]
    best = int(np.argmin(losses))
    return float(TEMPERATURES[best]) if 0 < best < len(TEMPERATURES) - 1 else None


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of the top-label confidence over ``bins`` equal-width bins."""
    confidence, accuracy, counts = reliability(probs, labels, bins)
    return float((np.abs(accuracy - confidence) * counts).sum() / len(labels))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean confidence, accuracy and count (what the reliability diagram draws)."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    used = [b for b in range(bins) if (which == b).any()]
    return (
        np.array([confidence[which == b].mean() for b in used]),
        np.array([correct[which == b].mean() for b in used]),
        np.array([(which == b).sum() for b in used]),
    )


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """Accuracy against confidence for each named set of ``(probs, labels)``; the diagonal is perfect."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="perfectly calibrated")
    for name, (probs, labels) in curves.items():
        confidence, accuracy, counts = reliability(probs, labels)
        ax.plot(confidence, accuracy, "o-", label=f"{name} (ECE {ece(probs, labels):.3f})")
        for x, y, n in zip(confidence, accuracy, counts):
            ax.annotate(str(n), (x, y), fontsize=6, xytext=(2, -8), textcoords="offset points")
    low = 1.0 / probs.shape[1] if curves else 0.0
    ax.set(xlim=(low, 1.0), ylim=(0.0, 1.02), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def store_temperature(checkpoint: Path, calibration: dict) -> None:
    """Write ``calibration`` (with its ``temperature``) into a Lightning checkpoint, atomically."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["calibration"] = calibration
    with atomic_file(checkpoint) as f:
        torch.save(state, f)


def level_ece(clips: tuple[np.ndarray, np.ndarray, np.ndarray], temperature: float, level: str) -> float:
    """ECE of clips ``(probs, labels, tracks)`` tempered by ``temperature``, per ``track`` (pooled) or ``clip``."""
    probs, labels, tracks = clips
    probs = temper(probs, temperature)
    if level == "track":
        probs, labels, _ = pool_tracks(probs, labels, tracks)
    return ece(probs, labels)


def calibrate(
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None, test: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict:
    """The temperature fitted on the validation clips ``(probs, labels, tracks)``, with the validation
    NLL and the test tracks' and clips' ECE before and after it (what metrics.json reports)."""
    fitted = fit_temperature(*val) if val is not None else None
    temperature = fitted or 1.0
    summary: dict = {
        "temperature": temperature,
        "fitted_on": "validation tracks"
        if fitted
        else "nothing: no validation scores, or no interior minimum (every validation track right by a margin)",
    }
    if val is not None:
        summary["val_track_nll"] = {"before": track_nll(*val, 1.0), "after": track_nll(*val, temperature)}
    for level in ("track", "clip"):
        summary[f"test_{level}_ece"] = {
            "before": level_ece(test, 1.0, level),
            "after": level_ece(test, temperature, level),
        }
    return summary
