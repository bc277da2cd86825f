"""A pretrained music tagger (musicnn) with a new head: a frozen probe, or fine-tuned end to end.

Our CRNN learns from a few hundred tracks; musicnn learned from a million songs' tags. A linear or
small MLP head on its features (``freeze=true``) is the field's standard small-data baseline, and
fine-tuning (``freeze=false``) lets the backbone move, at a fraction of the head's learning rate so
that what it learned is not washed out in the first epochs. ``pretrained=false`` keeps the
architecture and starts from random weights: what the weights, not the network, bring.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metalcore.core.errors import UserError
from metalcore.models.base import Network
from metalcore.models.musicnn import PATCH_FRAMES, build_tagger, load_musicnn

BACKBONES = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}  # model.backbone -> musicnn's model name
# what the head reads: the 50 tag probabilities, the 200-d penultimate layer, or the pooled conv features
FEATURES = ("tags", "embedding", "pooled")


class MusicnnTransfer(Network):
    """musicnn log-Mel ``(batch, 1, 96, frames)`` -> class logits ``(batch, num_classes)``.

    ``features`` picks the backbone output the head reads; ``hidden`` > 0 makes the head a small MLP.
    With ``freeze`` the backbone never changes (its batch norms stay in eval mode), so training
    computes each clip's features once (``features_of``) and trains ``from_features`` on them.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        n_mels: int = 96,
        backbone: str = "msd",
        pretrained: bool = True,
        freeze: bool = True,
        features: str = "tags",
        hidden: int = 0,
        dropout: float = 0.0,
        backbone_lr: float = 0.1,
    ) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        if backbone not in BACKBONES:
            raise UserError(f"model.backbone={backbone!r} is not one of {tuple(BACKBONES)}")
        if features not in FEATURES:
            raise UserError(f"model.features={features!r} is not one of {FEATURES}")
        if in_channels != 1:
            raise UserError(
                f"data.channels={in_channels}: musicnn hears mono; set data.channels=1 (model=musicnn does)"
            )
        if not 0 < backbone_lr <= 1:
            raise UserError(f"model.backbone_lr={backbone_lr} is a fraction of the head's learning rate: in (0, 1]")
        self.backbone_name, self.pretrained, self.frozen = BACKBONES[backbone], pretrained, freeze
        self.features, self.backbone_lr = features, backbone_lr
        self.backbone = build_tagger(self.backbone_name)
        with torch.no_grad():
            width = getattr(self.backbone.eval()(torch.zeros(1, 1, n_mels, PATCH_FRAMES)), features).shape[-1]
        mlp = [nn.Linear(width, hidden), nn.ReLU(inplace=True)] if hidden else []
        # the features standardised first (mean and variance over the training batches), as a linear probe's
        # inputs are: tag probabilities near 0 would otherwise barely move the logits
        standardise = nn.BatchNorm1d(width, affine=False, momentum=None)  # a plain average: exact after an epoch
        self.head = nn.Sequential(standardise, *mlp, nn.Dropout(dropout), nn.Linear(hidden or width, num_classes))
        self.backbone.requires_grad_(not freeze)
        self.train()

    def load_pretrained(self, cache_dir: Path) -> dict[str, str] | None:
        """musicnn's published weights into the backbone (fetched and converted on first use)."""
        if not self.pretrained:
            return None
        trained = load_musicnn(self.backbone_name, cache_dir)
        self.backbone.load_state_dict(trained.state_dict())
        return dict(trained.source)

    def train(self, mode: bool = True) -> MusicnnTransfer:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its running statistics: its features must not drift
            self.backbone.eval()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The head at the configured rate; a fine-tuned backbone at ``backbone_lr`` times it."""
        groups = [{"params": list(self.head.parameters())}]
        if not self.frozen:
            groups.append({"params": list(self.backbone.parameters()), "lr_scale": self.backbone_lr})
        return groups

    def features_of(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, 96, frames)`` -> the backbone's ``features`` ``(batch, width)``."""
        return getattr(self.backbone(spec), self.features)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, width)`` features -> logits ``(batch, num_classes)``: the head alone."""
        return self.head(features)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec``: ``(batch, 1, 96, frames)`` -> logits ``(batch, num_classes)``."""
        return self.from_features(self.features_of(spec))

    def fingerprint(self) -> str:
        """Hash of everything that decides ``features_of``: the backbone's weights and buffers, the output read."""
        digest = hashlib.sha256(f"{self.backbone_name}|{self.features}".encode())
        for name, tensor in self.backbone.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()
