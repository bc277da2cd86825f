"""``evaluate``'s last step: the files a user opens, each from what scoring and calibration found.

``metrics.json`` (the scores, intervals and calibration), ``confusion.png`` (per track),
``reliability.png`` (before and after the checkpoint's temperature), ``tracks.csv`` (every track,
the worst mistakes first) and, when asked, ``embeddings/`` for TensorBoard's projector. Each
writer takes the same three arguments, so another output is one more function in ``WRITERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from metalcore.core.files import atomic_file, write_json
from metalcore.evaluation.calibrate import Calibration
from metalcore.evaluation.embeddings import write_projector
from metalcore.evaluation.score import Scored
from metalcore.inference.tracks import Outcome
from metalcore.scoring.per_track import track_row, write_tracks
from metalcore.scoring.plots import confusion_figure
from metalcore.uncertainty.calibration import reliability_figure


def save_figure(figure, path: Path) -> None:
    with atomic_file(path) as f:
        figure.savefig(f, format="png", dpi=120)


def metrics(scored: Scored, calibration: Calibration) -> dict:
    """What metrics.json holds: the scores with their intervals, then the calibration."""
    return {**scored.metrics, "calibration": calibration.summary}


def write_metrics(scored: Scored, calibration: Calibration, output_dir: Path) -> None:
    write_json(output_dir / "metrics.json", metrics(scored, calibration))


def write_figures(scored: Scored, calibration: Calibration, output_dir: Path) -> None:
    """``confusion.png`` per track and ``reliability.png`` before and after the temperature."""
    confusion = np.array(scored.metrics["track"]["confusion"])
    title = f"{scored.source}, per track"
    save_figure(confusion_figure(confusion, scored.classifier.classes, title), output_dir / "confusion.png")
    save_figure(reliability_figure(calibration.curves, "per track"), output_dir / "reliability.png")


def track_rows(outcomes: list[Outcome], truth: list[str], classes: list[str]) -> list[dict]:
    """One row per track, worst first: mistakes, then hits, each by the true class's probability
    (lowest first: the most confident mistakes, then the closest calls); undecodable files last."""
    rows = []
    for outcome, true in zip(outcomes, truth):
        p = outcome.prediction
        scored = (p.probs, len(p.starts), p.duration) if p else (None, 0, None)
        rows.append({**track_row(outcome.path, true, classes, *scored), "error": outcome.error or ""})
    return sorted(rows, key=lambda r: (r["error"] != "", r.get("correct") is True, r.get("p_true", 0.0)))


def write_track_table(scored: Scored, calibration: Calibration, output_dir: Path) -> None:
    classes = scored.classifier.classes
    rows = track_rows(scored.outcomes, [label for _, label in scored.tracks], classes)
    write_tracks(output_dir / "tracks.csv", rows, classes)


WRITERS: list[Callable[[Scored, Calibration, Path], None]] = [write_metrics, write_figures, write_track_table]


def write_embeddings(scored: Scored, output_dir: Path, split: str) -> None:
    """Each predicted track's pooled penultimate features with its class, ``split``, prediction and confidence."""
    classes = scored.classifier.classes
    header = ["track", "class", "split", "predicted", "confidence", "correct"]
    metadata = [
        [p.path.name, classes[label], split, p.label, f"{p.confidence:.3f}", str(p.label == classes[label])]
        for p, label in scored.done
    ]
    write_projector(output_dir / "embeddings", scored.vectors, metadata, header)


def write(scored: Scored, calibration: Calibration, output_dir: Path, embeddings: str | None = None) -> dict:
    """Every writer's file in ``output_dir``; with ``embeddings`` (the split's name for the metadata)
    also ``embeddings/``. Returns metrics.json's content."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for writer in WRITERS:
        writer(scored, calibration, output_dir)
    if embeddings:
        write_embeddings(scored, output_dir, embeddings)
    return metrics(scored, calibration)
