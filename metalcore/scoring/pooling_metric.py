"""Training's track pooling: a torchmetrics ``Metric`` that gathers every process's clips under DDP,
then pools them with ``metalcore.scoring.pooling.mean_per_track``, the one rule.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from metalcore.scoring.pooling import mean_per_track


class TrackPooling(Metric):
    """Collects clip probabilities with their track index; ``compute`` averages them per track.

    States are concatenated across processes, so pooling is correct under DDP too.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("tracks", default=[], dist_reduce_fx="cat")
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor) -> None:
        self.probs.append(probs.float())
        self.labels.append(labels)
        self.tracks.append(tracks)

    def compute(self) -> tuple[torch.Tensor, ...]:
        """``(track ids, mean probabilities [n, classes], labels)`` for each track seen, then the clips
        as collected (track ids, probabilities, labels), which the cluster bootstrap resamples.

        Read it through ``pooled_tracks`` and ``pooled_clips``: torchmetrics squeezes one-element
        results, so with a single track (a sanity-check batch of 60 clips of one song) the ids and
        labels would come back 0-d.
        """
        tracks, probs, labels = (
            torch.cat(x) if isinstance(x, list) else x for x in (self.tracks, self.probs, self.labels)
        )
        ids, means, inverse = mean_per_track(probs, tracks)
        track_labels = torch.zeros(len(ids), dtype=labels.dtype, device=labels.device).scatter_(0, inverse, labels)
        return ids, means, track_labels, tracks, probs, labels


def pooled_tracks(pooling: TrackPooling) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-track probabilities ``(tracks, classes)`` and labels ``(tracks,)``, whatever the count."""
    _, probs, labels, *_ = pooling.compute()
    return probs.reshape(-1, probs.shape[-1]), labels.reshape(-1)


def pooled_clips(pooling: TrackPooling) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every clip seen, gathered from all processes, on the CPU: probabilities, labels, track ids."""
    *_, tracks, probs, labels = pooling.compute()
    return (
        probs.reshape(-1, probs.shape[-1]).double().cpu().numpy(),
        labels.reshape(-1).cpu().numpy(),
        tracks.reshape(-1).cpu().numpy(),
    )
