"""The simplest baseline: a linear classifier on each Mel band's mean and spread over the clip.

No convolution and no recurrence, so it shows how much of a score timbre statistics alone explain.
"""

from __future__ import annotations

import torch
from torch import nn

from metalcore.models.base import Network


class MelStats(Network):
    """``(batch, in_channels, n_mels, frames)`` -> class logits ``(batch, num_classes)``."""

    def __init__(
        self, num_classes: int, in_channels: int = 2, n_mels: int = 64, hidden: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        features = 2 * in_channels * n_mels
        mlp = [nn.Linear(features, hidden), nn.ReLU(inplace=True)] if hidden else []
        self.head = nn.Sequential(*mlp, nn.Dropout(dropout), nn.Linear(hidden or features, num_classes))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec``: ``(batch, in_channels, n_mels, frames)`` -> logits ``(batch, num_classes)``."""
        mean, std = spec.mean(-1), spec.std(-1)  # (B, C, M) each
        return self.head(torch.cat([mean, std], 1).flatten(1))
