"""Scoring a checkpoint on labelled whole tracks: the run's test split or any ``<root>/<class>/`` folder.

Each track goes through the same whole-track inference as ``metalcore.predict``: clip-level scores
count every segment with its track's label, track-level scores use the pooled label. The outputs are
``metrics.json``, a confusion matrix (``confusion.png``, per track) and ``tracks.csv``: every track
with its true label, prediction and confidence, the worst mistakes first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file, read_csv, write_csv, write_json
from metalcore.data.catalogue import scan
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome, predict_files
from metalcore.training.metrics import classification_metrics
from metalcore.training.plots import confusion_figure


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
        row = {
            "path": str(outcome.path),
            "true": true,
            "predicted": p.label if p else "",
            "confidence": round(p.confidence, 6) if p else "",
            "p_true": round(float(p.probs[classes.index(true)]), 6) if p else "",
            "correct": (p.label == true) if p else "",
            "segments": len(p.starts) if p else 0,
            "duration_s": round(p.duration, 3) if p else "",
            **({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p.probs)} if p else {}),
            "error": outcome.error or "",
        }
        rows.append(row)
    return sorted(
        rows, key=lambda r: (r["error"] != "", r["correct"] is True, r["p_true"] if r["p_true"] != "" else 0.0)
    )


def evaluate(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    output_dir: Path,
    hop_seconds: float | None = None,
    batch_size: int = 32,
    source: str = "",
) -> dict:
    """Predict every track, score clips and tracks, write the three outputs; returns metrics.json's content."""
    classes = classifier.classes
    unknown = sorted({label for _, label in tracks} - set(classes))
    if unknown:
        raise UserError(f"{source}: class folders {unknown} are not classes this model knows ({classes})")
    outcomes = list(predict_files(classifier, [path for path, _ in tracks], hop_seconds, batch_size))
    truth = [label for _, label in tracks]
    done = [(o.prediction, classes.index(t)) for o, t in zip(outcomes, truth) if o.prediction is not None]
    if not done:
        raise UserError(f"{source}: none of the {len(tracks)} tracks could be decoded")
    track_probs = np.stack([p.probs for p, _ in done])
    track_labels = np.array([label for _, label in done])
    clip_probs = np.concatenate([p.segment_probs for p, _ in done])
    clip_labels = np.concatenate([np.full(len(p.starts), label) for p, label in done])
    metrics = {
        "checkpoint": str(classifier.checkpoint),
        "data": source,
        "classes": classes,
        "segment_seconds": classifier.segment_seconds,
        "hop_seconds": hop_seconds or classifier.segment_seconds,
        "counts": {"tracks": len(done), "clips": len(clip_labels), "failed": len(tracks) - len(done)},
        "clip": score(clip_probs, clip_labels, len(classes)),
        "track": score(track_probs, track_labels, len(classes)),
        "failed": [{"path": str(o.path), "error": o.error} for o in outcomes if o.prediction is None],
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    figure = confusion_figure(np.array(metrics["track"]["confusion"]), classes, f"{source}, per track")
    with atomic_file(output_dir / "confusion.png") as f:
        figure.savefig(f, format="png", dpi=120)
    rows = track_rows(outcomes, truth, classes)
    header = [
        "path",
        "true",
        "predicted",
        "confidence",
        "p_true",
        "correct",
        "segments",
        "duration_s",
        *(f"p_{c}" for c in classes),
        "error",
    ]
    write_csv(output_dir / "tracks.csv", header, [[row.get(k, "") for k in header] for row in rows])
    return metrics
