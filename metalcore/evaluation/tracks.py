"""The labelled tracks ``evaluate`` scores, and their predictions: the run's test split or any
``<root>/<class>/`` folder, each track through the same whole-track inference as ``metalcore.predict``.

``metalcore.evaluation.evaluate`` scores, calibrates and writes what these predict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from metalcore.core.errors import UserError
from metalcore.core.files import read_csv
from metalcore.data.catalogue import scan
from metalcore.evaluation.embeddings import Features
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome, TrackPrediction, predict_files


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
    return [(track.path, track.label) for track in scan(root, min_classes=1, what="--data-root ")]


def clip_arrays(done: list[tuple[TrackPrediction, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every segment of the predicted tracks: probabilities, its track's label, its track's index."""
    return (
        np.concatenate([p.segment_probs for p, _ in done]),
        np.concatenate([np.full(len(p.starts), label) for p, label in done]),
        np.concatenate([np.full(len(p.starts), i) for i, (p, _) in enumerate(done)]),
    )


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
