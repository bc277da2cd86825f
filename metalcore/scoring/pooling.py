"""A track's probabilities are the mean of its clips' probabilities: one rule, everywhere.

Training's track-level validation and test scores, the bootstrap, the temperature fit, ``evaluate``
and ``predict`` all pool through ``mean_per_track``; ``pool_tracks`` is its NumPy face and
``metalcore.scoring.pooling_metric.TrackPooling`` gathers the clips of every process under DDP
before pooling them (apart, so that predict starts without torchmetrics).
"""

from __future__ import annotations

import numpy as np
import torch


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
