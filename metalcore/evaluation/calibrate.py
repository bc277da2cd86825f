"""``evaluate``'s second step: how well the checkpoint's confidences match its accuracy.

The scored probabilities carry the checkpoint's temperature; undoing it gives the raw ones, so the
expected calibration error is reported per track and per clip before and after the temperature,
and the reliability curves of the pooled tracks are kept for the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metalcore.evaluation.score import Scored
from metalcore.scoring.pooling import pool_tracks
from metalcore.uncertainty.calibration import level_ece, temper


@dataclass(frozen=True)
class Calibration:
    """metrics.json's ``calibration`` and the pooled tracks' ``(probs, labels)`` before and after ``T``."""

    summary: dict
    curves: dict[str, tuple[np.ndarray, np.ndarray]]


def ece_before_after(raw: tuple[np.ndarray, np.ndarray, np.ndarray], temperature: float) -> dict:
    """ECE per track and per clip of the uncalibrated clips ``raw``: without the temperature, then with it."""
    return {
        "temperature": temperature,
        **{
            f"{level}_ece": {"before": level_ece(raw, 1.0, level), "after": level_ece(raw, temperature, level)}
            for level in ("track", "clip")
        },
    }


def calibrate(scored: Scored) -> Calibration:
    """The ECE before and after the checkpoint's temperature, from the raw probabilities (``T`` undone)."""
    temperature = scored.classifier.temperature
    probs, labels, track_of = scored.clips
    raw = (temper(probs, 1 / temperature), labels, track_of)
    curves = {
        "before": pool_tracks(*raw)[:2],
        f"after (T = {temperature:.3g})": pool_tracks(probs, labels, track_of)[:2],
    }
    return Calibration(ece_before_after(raw, temperature), curves)
