"""The convolutional stack shared by the recurrent and non-recurrent models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from metalcore.core.errors import UserError


class ConvStack(nn.Sequential):
    """``(batch, in_channels, n_mels, frames)`` -> ``(batch, channels[-1], n_mels / 2^k, frames / 2^k)``.

    Each block is conv 3x3 -> BatchNorm -> ReLU -> 2x2 max-pool, as in the study (32/64/128).
    """

    def __init__(self, in_channels: int, channels: Sequence[int], n_mels: int) -> None:
        if n_mels >> len(channels) < 1:
            raise UserError(
                f"features.n_mels={n_mels} is too few for {len(channels)} pooling blocks "
                f"(model.channels={list(channels)}); need at least {2 ** len(channels)} Mel bins"
            )
        blocks = []
        for out_channels in channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        super().__init__(*blocks)
        self.out_channels = in_channels
        self.out_mels = n_mels >> len(channels)
