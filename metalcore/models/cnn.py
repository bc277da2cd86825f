"""The recurrence-free baseline: the same convolutional stack, pooled over frequency and time.

Its score against ``CRNN`` is what the GRU buys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from metalcore.models.base import Network
from metalcore.models.conv import ConvStack


class CNN(Network):
    """``(batch, in_channels, n_mels, frames)`` -> class logits ``(batch, num_classes)``."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2,
        n_mels: int = 64,
        channels: Sequence[int] = (32, 64, 128),
        conv_dropout: float = 0.25,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        self.cnn = ConvStack(in_channels, channels, n_mels)
        self.conv_dropout = nn.Dropout(conv_dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self.cnn.out_channels, num_classes))

    def compilable(self) -> nn.Module:
        return self.cnn

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec``: ``(batch, in_channels, n_mels, frames)`` -> logits ``(batch, num_classes)``."""
        x = self.conv_dropout(self.cnn(spec)).mean(2)  # (B, C, F'): average over frequency
        x = torch.cat([x.mean(2), x.amax(2)], 1)  # (B, 2C): mean and max over time
        return self.head(x)
