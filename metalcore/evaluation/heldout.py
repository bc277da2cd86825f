"""A run's test predictions, one row per track: ``test_tracks.csv`` beside metrics.json.

Intervals, out-of-fold pooling and paired comparisons all need to know which tracks a run got right,
not only how many: ``metalcore.report`` reads these files back to pool the folds of a
cross-validation into one out-of-fold table and to compare two configurations track by track.
The probabilities are the tested model's, before any temperature, so they agree with metrics.json.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from metalcore.core.files import write_csv
from metalcore.evaluation.bootstrap import pool_tracks

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
