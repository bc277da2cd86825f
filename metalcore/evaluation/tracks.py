"""Scoring a checkpoint on labelled whole tracks: the run's test split or any ``<root>/<class>/`` folder.

Each track goes through the same whole-track inference as ``metalcore.predict``: clip-level scores
count every segment with its track's label, track-level scores use the pooled label; every score
comes with a 95 % interval from a bootstrap over tracks. The outputs are ``metrics.json``, a
confusion matrix (``confusion.png``, per track), a reliability diagram before and after the
checkpoint's temperature (``reliability.png``) and ``tracks.csv``: every track with its true label,
prediction and confidence, the worst mistakes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file, read_csv, write_json
from metalcore.data.catalogue import scan
from metalcore.evaluation.embeddings import Features, penultimate, write_projector
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome, TrackPrediction, predict_files
from metalcore.scoring.metrics import classification_metrics
from metalcore.scoring.per_track import track_row, write_tracks
from metalcore.scoring.plots import confusion_figure
from metalcore.scoring.pooling import pool_tracks
from metalcore.uncertainty.bootstrap import LEVEL, RESAMPLES, track_intervals, with_intervals
from metalcore.uncertainty.calibration import level_ece, reliability_figure, temper


def run_folder(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` -> ``<run>``."""
    folder = checkpoint.resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def test_split(checkpoint: Path) -> list[tuple[Path, str]]:
    """(path, class) of the test tracks the checkpoint's run recorded in its ``split.csv``."""
    split = run_folder(checkpoint) / "split.csv"
    if not split.is_file():
        raise UserError(
            f"{split}: not found, so the test split of {checkpoint} is unknown; "
            f"pass --data-root <folder with one subfolder per class> to evaluate on other tracks"
        )
    tracks = [(Path(row["path"]), row["class"]) for row in read_csv(split) if row["split"] == "test"]
    if not tracks:
        raise UserError(f"{split}: lists no test tracks")
    return tracks


def labelled_folder(root: Path) -> list[tuple[Path, str]]:
    """(path, class) of every track under ``root/<class>/``."""
    return [(track.path, track.label) for track in scan(root, min_classes=1)]


def score(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """The training module's metrics (macro and weighted, AUROC) plus the confusion matrix."""
    probs_t, labels_t = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    scores = {name: float(value) for name, value in classification_metrics(num_classes)(probs_t, labels_t).items()}
    # on a subset of the classes some scores are undefined (no positives for AUROC): null, never NaN
    scores = {name: value if math.isfinite(value) else None for name, value in scores.items()}
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, probs.argmax(1)), 1)
    return {**scores, "confusion": confusion.tolist()}


def track_rows(outcomes: list[Outcome], truth: list[str], classes: list[str]) -> list[dict]:
    """One row per track, worst first: mistakes, then hits, each by the true class's probability
    (lowest first: the most confident mistakes, then the closest calls); undecodable files last."""
    rows = []
    for outcome, true in zip(outcomes, truth):
        p = outcome.prediction
        scored = (p.probs, len(p.starts), p.duration) if p else (None, 0, None)
        rows.append({**track_row(outcome.path, true, classes, *scored), "error": outcome.error or ""})
    return sorted(rows, key=lambda r: (r["error"] != "", r.get("correct") is True, r.get("p_true", 0.0)))


def clip_arrays(done: list[tuple[TrackPrediction, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every segment of the predicted tracks: probabilities, its track's label, its track's index."""
    return (
        np.concatenate([p.segment_probs for p, _ in done]),
        np.concatenate([np.full(len(p.starts), label) for p, label in done]),
        np.concatenate([np.full(len(p.starts), i) for i, (p, _) in enumerate(done)]),
    )


def scored(done: list[tuple[TrackPrediction, int]], num_classes: int, seed: int = 0) -> dict:
    """Clip- and track-level scores, each with its 95 % interval from the bootstrap over tracks."""
    clips = clip_arrays(done)
    track_probs = np.stack([p.probs for p, _ in done])
    track_labels = np.array([label for _, label in done])
    results = {"clip": score(clips[0], clips[1], num_classes), "track": score(track_probs, track_labels, num_classes)}
    return with_intervals(results, track_intervals(*clips, seed=seed))


def calibration(raw: tuple[np.ndarray, np.ndarray, np.ndarray], temperature: float) -> dict:
    """ECE per track and per clip of the uncalibrated clips ``raw``: without the temperature, then with it."""
    return {
        "temperature": temperature,
        **{
            f"{level}_ece": {"before": level_ece(raw, 1.0, level), "after": level_ece(raw, temperature, level)}
            for level in ("track", "clip")
        },
    }


def predicted(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    hop_seconds: float | None,
    batch_size: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    features: Features | None = None,
) -> tuple[list[Outcome], list[tuple[TrackPrediction, int]], list[np.ndarray | None]]:
    """Every track's outcome; the predicted ones with their true class index; and, when ``features``
    collects them, each predicted track's pooled penultimate features."""
    classes = classifier.classes
    outcomes, done, pooled = [], [], []
    for outcome, (_, true) in zip(
        predict_files(classifier, [path for path, _ in tracks], hop_seconds, batch_size, transform=transform), tracks
    ):
        outcomes.append(outcome)
        taken = features.take() if features is not None else None  # a failed track's are dropped too
        if outcome.prediction is not None:
            done.append((outcome.prediction, classes.index(true)))
            pooled.append(taken)
    return outcomes, done, pooled


def evaluate(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    output_dir: Path,
    hop_seconds: float | None = None,
    batch_size: int = 32,
    source: str = "",
    embeddings: str | None = None,
) -> tuple[dict, list[Outcome]]:
    """Predict every track, score clips and tracks with intervals, check calibration, write the outputs.

    Writes metrics.json, confusion.png, reliability.png and tracks.csv; with ``embeddings`` (the
    split's name for the metadata) also each track's pooled penultimate features for TensorBoard's
    projector in ``embeddings/``. Returns metrics.json's content and every track's outcome.
    """
    classes = classifier.classes
    unknown = sorted({label for _, label in tracks} - set(classes))
    if unknown:
        raise UserError(f"{source}: class folders {unknown} are not classes this model knows ({classes})")
    with penultimate(classifier) if embeddings else nullcontext() as features:
        outcomes, done, vectors = predicted(classifier, tracks, hop_seconds, batch_size, features=features)
    if not done:
        raise UserError(f"{source}: none of the {len(tracks)} tracks could be decoded")
    probs, labels, track_of = clip_arrays(done)
    raw = (temper(probs, 1 / classifier.temperature), labels, track_of)  # the checkpoint's temperature undone
    metrics = {
        "checkpoint": str(classifier.checkpoint),
        "data": source,
        "classes": classes,
        "segment_seconds": classifier.segment_seconds,
        "hop_seconds": hop_seconds or classifier.segment_seconds,
        "counts": {
            "tracks": len(done),
            "clips": sum(len(p.starts) for p, _ in done),
            "failed": len(tracks) - len(done),
        },
        **scored(done, len(classes)),
        "bootstrap": {"unit": "track", "resamples": RESAMPLES, "level": LEVEL, "seed": 0},
        "calibration": calibration(raw, classifier.temperature),
        "failed": [{"path": str(o.path), "error": o.error} for o in outcomes if o.prediction is None],
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    save_figure(
        confusion_figure(np.array(metrics["track"]["confusion"]), classes, f"{source}, per track"),
        output_dir / "confusion.png",
    )
    curves = {
        "before": pool_tracks(*raw)[:2],
        f"after (T = {classifier.temperature:.3g})": pool_tracks(probs, labels, track_of)[:2],
    }
    save_figure(reliability_figure(curves, "per track"), output_dir / "reliability.png")
    truth = [label for _, label in tracks]
    write_tracks(output_dir / "tracks.csv", track_rows(outcomes, truth, classes), classes)
    if embeddings:
        header = ["track", "class", "split", "predicted", "confidence", "correct"]
        metadata = [
            [p.path.name, classes[label], embeddings, p.label, f"{p.confidence:.3f}", str(p.label == classes[label])]
            for p, label in done
        ]
        write_projector(output_dir / "embeddings", vectors, metadata, header)
    return metrics, outcomes


def save_figure(figure, path: Path) -> None:
    with atomic_file(path) as f:
        figure.savefig(f, format="png", dpi=120)
