"""One row per scored track, one schema for every file that lists them.

A training run's ``test_tracks.csv`` and ``evaluate``'s ``tracks.csv`` hold the same columns:
the file, its true and predicted class, the confidence, the true class's probability, whether it
was right, how many segments it was scored on and its seconds, every class's probability, and
the error of a file that could not be scored. ``metalcore.report`` reads them back to pool the
folds of a cross-validation and to compare configurations track by track.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metalcore.core.files import read_csv, write_csv
from metalcore.scoring.pooling import pool_tracks

TEST_TRACKS = "test_tracks.csv"  # beside a training run's metrics.json
FIXED = ("path", "true", "predicted", "confidence", "p_true", "correct", "segments", "duration_s")


def columns(classes: Sequence[str]) -> list[str]:
    """The header: the fixed columns, ``p_<class>`` for each class, then ``error``."""
    return [*FIXED, *(f"p_{c}" for c in classes), "error"]


def track_row(
    path: Path, true: str, classes: Sequence[str], probs: np.ndarray | None, segments: int, duration: float | None
) -> dict:
    """One track's row from its pooled ``probs (classes,)``; ``probs`` None leaves the scores empty
    (a file that could not be scored: ``error`` says why)."""
    if probs is None:
        return {"path": str(path), "true": true, "segments": 0}
    predicted = classes[int(probs.argmax())]
    return {
        "path": str(path),
        "true": true,
        "predicted": predicted,
        "confidence": round(float(probs.max()), 6),
        "p_true": round(float(probs[classes.index(true)]), 6),
        "correct": predicted == true,
        "segments": segments,
        "duration_s": round(duration, 3) if duration is not None else "",
        **{f"p_{c}": round(float(v), 6) for c, v in zip(classes, probs)},
    }


def clip_rows(
    tracks: Sequence[tuple[Path, str]],
    durations: Sequence[float] | None,
    classes: Sequence[str],
    clips: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[dict]:
    """A row per track that ``clips (probs, labels, track ids)`` cover, in track id order; ``tracks``
    (``(source, class)``) and ``durations`` (seconds) are indexed by the ids the clips carry."""
    clip_probs, clip_labels, clip_tracks = clips
    probs, _, inverse = pool_tracks(clip_probs, clip_labels, clip_tracks)
    segments = np.bincount(inverse, minlength=len(probs))
    return [
        track_row(tracks[i][0], tracks[i][1], classes, p, int(n), None if durations is None else float(durations[i]))
        for i, p, n in zip(np.unique(clip_tracks), probs, segments)
    ]


def write_tracks(path: Path, rows: Sequence[dict], classes: Sequence[str]) -> None:
    """``rows`` (``track_row``'s, plus ``error`` where there is one) as CSV, in the order given."""
    header = columns(classes)
    write_csv(path, header, [[row.get(k, "") for k in header] for row in rows])


def read_tracks(path: Path) -> list[dict[str, str]]:
    """The rows of a per-track CSV; an empty list when the run wrote none."""
    return read_csv(path) if path.is_file() else []


def classes_in(row: dict[str, str]) -> list[str]:
    """The classes whose probabilities a row holds, in the file's order (older files lack ``p_true``)."""
    return [k[2:] for k in row if k.startswith("p_") and k not in FIXED]
