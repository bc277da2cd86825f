"""Evaluating a checkpoint on labelled whole tracks, in three steps that each do one thing.

``score`` predicts every track and scores clips and tracks with 95 % intervals; ``calibrate``
compares the confidences with the accuracy before and after the checkpoint's temperature;
``write`` turns both into the files (``metalcore.evaluation.write.WRITERS``). The page
(``metalcore.evaluation.page``) is written last, from the same ``Scored``, once ``--perturb`` has run.
"""

from __future__ import annotations

from pathlib import Path

from metalcore.evaluation.calibrate import calibrate
from metalcore.evaluation.score import Scored, score
from metalcore.evaluation.write import write
from metalcore.inference.checkpoint import Classifier


def evaluate(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    output_dir: Path,
    hop_seconds: float | None = None,
    batch_size: int = 32,
    source: str = "",
    embeddings: str | None = None,
) -> tuple[dict, Scored]:
    """Score, calibrate, write; returns metrics.json's content and what scoring found.

    With ``embeddings`` (the split's name for the metadata) also each track's pooled penultimate
    features for TensorBoard's projector in ``embeddings/``.
    """
    scored = score(classifier, tracks, hop_seconds, batch_size, source, embeddings=embeddings is not None)
    return write(scored, calibrate(scored), output_dir, embeddings), scored
