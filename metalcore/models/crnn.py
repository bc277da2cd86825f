"""CNN followed by a GRU over time: the study's architecture, corrected and configurable.

The study reshaped the CNN output with ``view``, which mixes time with channels; here the feature
map is permuted to ``(batch, time, channels x freq)`` so the GRU really reads a sequence of frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from metalcore.core.errors import UserError
from metalcore.models.base import Network
from metalcore.models.conv import ConvStack

POOLINGS = ("mean", "max", "last")


class CRNN(Network):
    """``(batch, in_channels, n_mels, frames)`` -> class logits ``(batch, num_classes)``.

    ``model=crnn`` is ours (bidirectional, mean over time); ``model=study`` sets the study's network:
    unidirectional 2 x GRU of 68 read at the last step, then a 512-unit layer.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2,
        n_mels: int = 64,
        channels: Sequence[int] = (32, 64, 128),
        gru_hidden: int = 128,
        gru_layers: int = 2,
        bidirectional: bool = True,
        pooling: str = "mean",
        fc_hidden: int = 0,
        conv_dropout: float = 0.25,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        if pooling not in POOLINGS:
            raise UserError(f"model.pooling={pooling!r} is not one of {POOLINGS}")
        if gru_hidden < 1 or gru_layers < 1:
            raise UserError(f"model.gru_hidden={gru_hidden} and model.gru_layers={gru_layers} must be at least 1")
        self.cnn = ConvStack(in_channels, channels, n_mels)
        self.conv_dropout = nn.Dropout(conv_dropout)
        self.gru = nn.GRU(
            self.cnn.out_channels * self.cnn.out_mels,
            gru_hidden,
            num_layers=gru_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.pooling = pooling
        width = gru_hidden * (2 if bidirectional else 1)
        fc = [nn.Linear(width, fc_hidden), nn.ReLU(inplace=True)] if fc_hidden else []
        self.head = nn.Sequential(*fc, nn.Dropout(dropout), nn.Linear(fc_hidden or width, num_classes))

    def compilable(self) -> nn.Module:
        return self.cnn

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec``: ``(batch, in_channels, n_mels, frames)`` -> logits ``(batch, num_classes)``."""
        x = self.conv_dropout(self.cnn(spec))  # (B, C, M', F')
        x = x.permute(0, 3, 1, 2).flatten(2)  # (B, F', C * M'): time first, as the GRU expects
        # cuDNN RNNs compute in fp32 anyway; running the GRU outside autocast keeps every backend happy.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, _ = self.gru(x.float())  # (B, F', H * directions)
        if self.pooling == "mean":
            x = x.mean(1)
        elif self.pooling == "max":
            x = x.amax(1)
        elif self.gru.bidirectional:  # each direction after it has read the whole clip: the backward one ends at 0
            hidden = self.gru.hidden_size
            x = torch.cat([x[:, -1, :hidden], x[:, 0, hidden:]], 1)
        else:
            x = x[:, -1]
        return self.head(x)  # (B, num_classes)
