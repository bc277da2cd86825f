"""musicnn's networks in PyTorch (Pons & Serra 2019, ``musicnn/models.py`` of musicnn 0.1.0).

Two architectures carry the four released backbones:

- ``Musicnn`` (``MSD_musicnn``, ``MTT_musicnn``): a musically motivated front-end of vertical
  (timbral, 7 frames x 38 or 67 bands) and horizontal (temporal, 128/64/32 frames x 1 band) filters,
  each max-pooled over frequency; a mid-end of three 1-D convolutions over time with dense
  connections; a back-end that max- and mean-pools over time and ends in dense layers.
- ``MusicnnVGG`` (``MSD_vgg``, ``MTT_vgg``): five 3x3 conv blocks with max pooling.

Everything is as TensorFlow computed it: batch-norm epsilon 1e-3 (PyTorch's default is 1e-5),
the same padding (TF ``same`` with an even kernel pads one more frame after than before), BN after
the ReLU, max and mean pooled values interleaved in the pooled vector. Inputs are metalcore's
layout ``(batch, 1, 96, frames)`` (``MusicnnFrontend``'s output); the original's is
``(batch, frames, 96)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from metalcore.models.musicnn.frontend import N_MELS
from metalcore.models.musicnn.labels import tags_of

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
MUSICNN_BACKBONES = ("MSD_musicnn", "MTT_musicnn")
VGG_BACKBONES = ("MSD_vgg", "MTT_vgg")
BACKBONES = MUSICNN_BACKBONES + VGG_BACKBONES


class TaggerOutput(NamedTuple):
    """What a musicnn network computes for a batch of patches (a tuple, so it traces and exports).

    - ``logits``: ``(batch, 50)`` before the sigmoid;
    - ``tags``: ``(batch, 50)`` tag probabilities (sigmoid), in the order of ``Tagger.tags``;
    - ``embedding``: the layer before the output: ``(batch, 200)`` for musicnn (its ``penultimate``
      feature, after batch norm), ``(batch, 256)`` for VGG (flattened ``pool5``);
    - ``pooled``: musicnn's temporal pooling ``(batch, 1506)``: max and mean over time of each of its
      753 mid-end features, interleaved ``[max_0, mean_0, max_1, mean_1, ...]`` as the original
      flattens them; for VGG, the same tensor as ``embedding``.
    """

    logits: torch.Tensor
    tags: torch.Tensor
    embedding: torch.Tensor
    pooled: torch.Tensor


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


def _same_time_padding(kernel: int) -> tuple[int, int, int, int]:
    """F.pad's (freq left, freq right, time before, time after) for TF 'same' along time, stride 1:
    the extra frame of an even kernel goes after."""
    total = kernel - 1
    return (0, 0, total // 2, total - total // 2)


class Tagger(nn.Module):
    """What every musicnn backbone is: ``(batch, 1, 96, frames)`` log-Mel -> ``TaggerOutput``."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown musicnn backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        self.backbone = backbone
        self.tags = tags_of(backbone)
        self.source: dict[str, str] = {}  # where the weights came from; filled by load_musicnn

    @staticmethod
    def _time_major(spec: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, 96, frames)`` -> ``(batch, 1, frames, 96)``, the original's (time, frequency) image."""
        if spec.dim() != 4 or spec.shape[1] != 1 or spec.shape[2] != N_MELS:
            raise ValueError(f"expected a log-Mel of shape (batch, 1, {N_MELS}, frames), got {tuple(spec.shape)}")
        return spec.transpose(2, 3)


class PooledConv(nn.Module):
    """Conv -> ReLU -> BN -> max over all frequencies: ``(batch, 1, frames, 96)`` -> ``(batch, filters, frames)``."""

    def __init__(self, filters: int, kernel: tuple[int, int], padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(F.pad(x, self.padding)))).amax(dim=3)


class MidendConv(nn.Module):
    """Conv over 7 frames of all features -> ReLU -> BN: ``(batch, features, frames)`` -> ``(batch, 64, frames)``."""

    def __init__(self, features: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(features, filters, 7)
        self.bn = _bn1d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))


class Musicnn(Tagger):
    """``MSD_musicnn`` / ``MTT_musicnn``: 787,159 parameters; takes patches of any length (its pooling is global)."""

    def __init__(self, backbone: str = "MSD_musicnn", classes: int = 50) -> None:
        super().__init__(backbone)
        if backbone not in MUSICNN_BACKBONES:
            raise ValueError(f"Musicnn builds {' or '.join(MUSICNN_BACKBONES)}, not {backbone!r}")
        timbral_filters, temporal_filters, midend_filters, dense_units = 204, 51, 64, 200  # int(1.6 * 128), ...
        self.input_bn = _bn2d(1)
        self.timbral = nn.ModuleList(
            PooledConv(timbral_filters, (7, int(share * N_MELS)), (0, 0, 3, 3)) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            PooledConv(temporal_filters, (frames, 1), _same_time_padding(frames)) for frames in (128, 64, 32)
        )
        frontend = 2 * timbral_filters + 3 * temporal_filters  # 561
        self.midend = nn.ModuleList(
            MidendConv(frontend if i == 0 else midend_filters, midend_filters) for i in range(3)
        )
        features = frontend + 3 * midend_filters  # 753
        self.pooled_bn = _bn1d(2 * features)
        self.dense = nn.Linear(2 * features, dense_units)
        self.dense_bn = _bn1d(dense_units)
        self.output = nn.Linear(dense_units, classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, spec: torch.Tensor) -> TaggerOutput:
        """``spec``: ``(batch, 1, 96, frames)`` -> ``TaggerOutput`` (logits, tags ``(batch, 50)``, embedding
        ``(batch, 200)``, pooled ``(batch, 1506)``)."""
        x = self.input_bn(self._time_major(spec))  # (B, 1, T, 96)
        front = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)  # (B, 561, T)
        conv1 = self.midend[0](front)  # (B, 64, T)
        res2 = self.midend[1](conv1) + conv1
        res3 = self.midend[2](res2) + res2
        features = torch.cat([front, conv1, res2, res3], dim=1)  # (B, 753, T)
        pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)  # (B, 1506)
        embedding = self.dense_bn(F.relu(self.dense(self.dropout(self.pooled_bn(pooled)))))  # (B, 200)
        logits = self.output(self.dropout(embedding))  # (B, 50)
        return TaggerOutput(logits, torch.sigmoid(logits), embedding, pooled)


# (kernel, stride) of each VGG block's max pooling over (time, frequency), as the shipped graphs hold them:
# MSD_vgg's first two pool time and frequency apart (``musicnn/models.py`` shows only MTT_vgg's).
VGG_POOLS = {
    "MTT_vgg": (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))),
    "MSD_vgg": (((4, 1), (4, 1)), ((1, 4), (1, 4)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))),
}


class MusicnnVGG(Tagger):
    """``MSD_vgg`` / ``MTT_vgg``: 605,748 parameters; five 3x3 conv blocks (TF 'same' padding: 1 on each
    side), each ReLU -> BN -> max pool. Its dense layer fixes the length: patches must pool down to the
    2 x 1 grid of the 187-frame patches it was trained on (130-193 frames for MTT_vgg, 128-191 for MSD_vgg)."""

    def __init__(self, backbone: str = "MSD_vgg", classes: int = 50, filters: int = 128) -> None:
        super().__init__(backbone)
        if backbone not in VGG_BACKBONES:
            raise ValueError(f"MusicnnVGG builds {' or '.join(VGG_BACKBONES)}, not {backbone!r}")
        self.input_bn = _bn2d(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(_bn2d(filters) for _ in range(5))
        self.pools = nn.ModuleList(nn.MaxPool2d(kernel, stride) for kernel, stride in VGG_POOLS[backbone])
        self.dropout_conv, self.dropout = nn.Dropout(0.25), nn.Dropout(0.5)
        self.output = nn.Linear(2 * 1 * filters, classes)

    def forward(self, spec: torch.Tensor) -> TaggerOutput:
        """``spec``: ``(batch, 1, 96, frames)`` -> ``TaggerOutput`` (logits, tags ``(batch, 50)``, embedding and
        pooled both the flattened ``pool5``, ``(batch, 256)``)."""
        x = self.input_bn(self._time_major(spec))  # (B, 1, T, 96)
        for i, (conv, bn, pool) in enumerate(zip(self.convs, self.bns, self.pools)):
            x = pool(bn(F.relu(conv(self.dropout_conv(x) if i else x))))  # (B, 128, T', F')
        embedding = x.permute(0, 2, 3, 1).flatten(1)  # (B, 256), flattened in TF's (time, freq, channel) order
        logits = self.output(self.dropout(embedding))
        return TaggerOutput(logits, torch.sigmoid(logits), embedding, embedding)


def build_tagger(backbone: str) -> Tagger:
    """The untrained network of a backbone: ``Musicnn`` or ``MusicnnVGG``."""
    return MusicnnVGG(backbone) if backbone in VGG_BACKBONES else Musicnn(backbone)
