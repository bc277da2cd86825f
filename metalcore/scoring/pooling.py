"""A track's probabilities are the mean of its clips' probabilities: one rule, everywhere.

Training's track-level validation and test scores, the bootstrap, the temperature fit, ``evaluate``
and ``predict`` all pool through ``mean_per_track``; ``pool_tracks`` is its NumPy face and
``TrackPooling`` gathers the clips of every process under DDP before pooling them.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric


def mean_per_track(probs: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips ``probs (clips, classes)`` with their ``tracks (clips,)`` -> the track ids in ascending
    order, each track's mean probability ``(tracks, classes)``, and per clip the row of its track."""
    ids, inverse = torch.unique(tracks, return_inverse=True)
    sums = torch.zeros(len(ids), probs.shape[1], dtype=probs.dtype, device=probs.device).index_add_(0, inverse, probs)
    counts = torch.bincount(inverse, minlength=len(ids)).to(probs.dtype)
    return ids, sums / counts[:, None], inverse


def pool_tracks(
    clip_probs: np.ndarray, clip_labels: np.ndarray, clip_tracks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mean_per_track`` on NumPy arrays (float64 kept): each track's mean probability
    ``(tracks, classes)``, its label, and per clip the row of its track."""
    _, probs, inverse = mean_per_track(
        torch.from_numpy(np.asarray(clip_probs, dtype=np.float64)), torch.from_numpy(np.asarray(clip_tracks))
    )
    inverse = inverse.numpy()
    labels = np.zeros(len(probs), dtype=np.int64)
    labels[inverse] = clip_labels
    return probs.numpy(), labels, inverse


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
