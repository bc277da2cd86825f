"""``evaluate``'s first step: predict every labelled track and score clips and tracks, with intervals.

Each track goes through the same whole-track inference as ``metalcore.predict``: clip-level scores
count every segment with its track's label, track-level scores use the pooled label; every score
comes with a 95 % interval from a bootstrap over tracks. The probabilities are the checkpoint's,
its temperature applied; ``metalcore.evaluation.calibrate`` looks at them without it.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.evaluation.embeddings import penultimate
from metalcore.evaluation.tracks import clip_arrays, predicted
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome, TrackPrediction
from metalcore.scoring.metrics import classification_metrics
from metalcore.uncertainty.bootstrap import LEVEL, RESAMPLES, track_intervals, with_intervals


@dataclass(frozen=True)
class Scored:
    """What scoring found: the tracks' outcomes and the scores, all that calibration and writers read."""

    classifier: Classifier
    source: str  # what was scored, in words: "test split of <run>" or a folder
    tracks: list[tuple[Path, str]]  # (path, class) as given
    outcomes: list[Outcome]  # one per track, in the order of ``tracks``
    done: list[tuple[TrackPrediction, int]]  # the predicted tracks with their true class index
    vectors: list[np.ndarray | None]  # each predicted track's pooled penultimate features, when collected
    metrics: dict  # metrics.json without the calibration

    @property
    def clips(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every segment of the predicted tracks: probabilities, its track's label, its track's index."""
        return clip_arrays(self.done)


def scores(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """The training module's metrics (macro and weighted, AUROC) plus the confusion matrix."""
    probs_t, labels_t = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    values = {name: float(value) for name, value in classification_metrics(num_classes)(probs_t, labels_t).items()}
    # on a subset of the classes some scores are undefined (no positives for AUROC): null, never NaN
    values = {name: value if math.isfinite(value) else None for name, value in values.items()}
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, probs.argmax(1)), 1)
    return {**values, "confusion": confusion.tolist()}


def scored(done: list[tuple[TrackPrediction, int]], num_classes: int, seed: int = 0) -> dict:
    """Clip- and track-level scores, each with its 95 % interval from the bootstrap over tracks."""
    clips = clip_arrays(done)
    track_probs = np.stack([p.probs for p, _ in done])
    track_labels = np.array([label for _, label in done])
    results = {"clip": scores(clips[0], clips[1], num_classes), "track": scores(track_probs, track_labels, num_classes)}
    return with_intervals(results, track_intervals(*clips, seed=seed))


def score(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    hop_seconds: float | None = None,
    batch_size: int = 32,
    source: str = "",
    embeddings: bool = False,
) -> Scored:
    """Predict every track and score what could be predicted; with ``embeddings`` also collect each
    track's pooled penultimate features. UserError for classes the model does not know, or when no
    track could be decoded."""
    classes = classifier.classes
    unknown = sorted({label for _, label in tracks} - set(classes))
    if unknown:
        raise UserError(f"{source}: class folders {unknown} are not classes this model knows ({classes})")
    with penultimate(classifier) if embeddings else nullcontext() as features:
        outcomes, done, vectors = predicted(classifier, tracks, hop_seconds, batch_size, features=features)
    if not done:
        raise UserError(f"{source}: none of the {len(tracks)} tracks could be decoded")
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
        "failed": [{"path": str(o.path), "error": o.error} for o in outcomes if o.prediction is None],
    }
    return Scored(classifier, source, tracks, outcomes, done, vectors, metrics)
