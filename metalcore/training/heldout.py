"""What a training run records about its held-out tracks: ``test_tracks.csv``, intervals, calibration.

Intervals, out-of-fold pooling and paired comparisons all need to know which tracks a run got right,
not only how many: ``metalcore.report`` reads these files back to pool the folds of a
cross-validation into one out-of-fold table and to compare two configurations track by track.
The probabilities are the tested model's, before any temperature, so they agree with metrics.json.
``summary`` is what metrics.json says about how far the test scores can be trusted.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from metalcore.core.files import write_csv
from metalcore.uncertainty.bootstrap import (
    LEVEL,
    RESAMPLES,
    SUFFIX,
    formatted,
    pool_tracks,
    track_intervals,
    with_intervals,
)
from metalcore.uncertainty.calibration import calibrate

FILE = "test_tracks.csv"


def write_test_tracks(
    path: Path,
    tracks: list[tuple[Path, str]],
    classes: list[str],
    clips: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """One row per test track: file, true class, predicted class, confidence, each class's probability.

    ``tracks`` are the test split's ``(source, class)`` in the order of the track ids the clips carry.
    """
    clip_probs, clip_labels, clip_tracks = clips
    probs, labels, _ = pool_tracks(clip_probs, clip_labels, clip_tracks)
    ids = np.unique(clip_tracks)
    rows = [
        [str(tracks[i][0]), classes[label], classes[int(p.argmax())], f"{p.max():.6f}", *(f"{x:.6f}" for x in p)]
        for i, label, p in zip(ids, labels, probs)
    ]
    write_csv(path, ["path", "true", "predicted", "confidence", *(f"p_{c}" for c in classes)], rows)


def read_test_tracks(path: Path) -> list[dict[str, str]]:
    """The rows of a ``test_tracks.csv``; an empty list when the run wrote none."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary(results: dict, held_out: dict, seed: int) -> dict:
    """What metrics.json says about the test scores' trust: each score with its 95 % interval, the
    bootstrap's settings, and the temperature fitted on the validation clips with the ECE before and
    after. ``held_out`` maps ``val``/``test`` to their clips ``(probs, labels, track ids)``."""
    test = held_out["test"]
    return {
        "test": with_intervals(results, track_intervals(*test, seed=seed)),
        "bootstrap": {"unit": "track", "resamples": RESAMPLES, "level": LEVEL, "seed": seed},
        "calibration": calibrate(held_out.get("val"), test),
    }


def log_lines(trust: dict) -> list[str]:
    """The train log's closing lines: test scores with intervals, then the calibration."""
    test, calibration = trust["test"], trust["calibration"]
    lines = [
        f"test per {level + ':':<6} "
        + "  ".join(f"{m} {formatted(test[level][m], test[level].get(m + SUFFIX))}" for m in ("acc", "f1"))
        + "  (95% intervals, tracks resampled)"
        for level in ("clip", "track")
    ]
    lines.append(
        f"temperature {calibration['temperature']:.3f} (fitted on {calibration['fitted_on']}): test track ECE "
        f"{calibration['test_track_ece']['before']:.4f} -> {calibration['test_track_ece']['after']:.4f}"
    )
    return lines
