"""Zero-shot diagnosis: does a pretrained tagger already tell my classes apart, before any training?

Every track of a labelled folder goes through musicnn whole (3 s windows, its tag probabilities
averaged over them, as musicnn itself summarises a song); then, for each class, each of the 50
tags is scored by how well it alone ranks that class's tracks above the others (one-vs-rest
ROC-AUC), with a 95 % interval from resampling the tracks. A tag with an AUC near 1 (or near 0:
the tag is *lower* for the class) already separates it; if none does, a probe on these tags has
little to start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome, predict_files
from metalcore.models.musicnn import load_musicnn
from metalcore.models.musicnn.frontend import SAMPLE_RATE, MusicnnFrontend
from metalcore.models.transfer import BACKBONES
from metalcore.uncertainty.bootstrap import ranking_auc

PATCH_SECONDS = 3.0  # the length of the patches musicnn's models were trained on


class TagClassifier(Classifier):
    """16 kHz mono audio ``(batch, 1, samples)`` -> musicnn's 50 tag probabilities ``(batch, 50)``.

    A ``Classifier`` whose "classes" are the tags, so the whole-track inference of ``predict`` runs
    it unchanged; its outputs are independent sigmoids, not a softmax over classes.
    """

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(self.frontend(audio)).tags.float()


def tagger(backbone: str, cache_dir: Path, device: torch.device) -> tuple[TagClassifier, dict[str, str]]:
    """musicnn's ``backbone`` (msd or mtt) with its published weights, and their source record."""
    if backbone not in BACKBONES:
        raise UserError(f"--backbone {backbone}: one of {', '.join(BACKBONES)}")
    network = load_musicnn(BACKBONES[backbone], cache_dir)
    model = TagClassifier(MusicnnFrontend(SAMPLE_RATE), network, list(network.tags), SAMPLE_RATE, 1, PATCH_SECONDS)
    return model.to(device), dict(network.source)


@dataclass(frozen=True)
class Separation:
    """How well one tag alone picks out one class's tracks."""

    label: str
    tag: str
    auc: float
    interval: list[float] | None
    inside: float  # the tag's mean probability over the class's tracks
    outside: float  # and over the other tracks

    @property
    def strength(self) -> float:
        """Distance from chance in either direction (a tag that is lower for the class separates it too)."""
        return abs(self.auc - 0.5) if np.isfinite(self.auc) else -1.0


def track_tags(model: TagClassifier, paths: list[Path], hop_seconds: float | None, batch_size: int) -> list[Outcome]:
    """Each track's outcome; a prediction's ``probs`` are its 50 tag probabilities, averaged over its windows."""
    return list(predict_files(model, paths, hop_seconds, batch_size))


def separations(probs: np.ndarray, labels: list[str], tags: list[str], seed: int = 0) -> dict[str, list[Separation]]:
    """Per class, every tag's one-vs-rest AUC with its 95 % interval (tracks resampled), best separating first
    (among equal AUCs, the tag whose mean differs most between the class and the rest)."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UserError(f"the tracks hold one class only ({classes[0] if classes else 'none'}): nothing to separate")
    truth = np.asarray(labels)
    out = {}
    for label in classes:
        member = truth == label
        rows = [
            Separation(label, tag, *ranking_auc(probs[:, k], member, seed=seed), *means(probs[:, k], member))
            for k, tag in enumerate(tags)
        ]
        out[label] = sorted(rows, key=lambda r: (-r.strength, -abs(r.inside - r.outside)))  # ties: the wider margin
    return out


def means(scores: np.ndarray, member: np.ndarray) -> tuple[float, float]:
    """Mean score over the class's tracks and over the others."""
    return float(scores[member].mean()), float(scores[~member].mean())
