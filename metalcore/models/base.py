"""The network contract: what every metalcore network is, stated once and checked where one is built.

A network maps a batch of Mel-spectrograms ``(batch, in_channels, n_mels, frames)`` to class
logits ``(batch, num_classes)``, and is built as ``Net(num_classes, in_channels, n_mels, ...)``:
training fills ``num_classes`` from the data folders and the config passes ``data.channels`` and
``features.n_mels``; its own settings follow. Subclass ``Network`` and the training command, the
checkpoint loader and the exporters take it as they take the CRNN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class Network(nn.Module):
    """Mel-spectrograms ``(batch, in_channels, n_mels, frames)`` -> logits ``(batch, num_classes)``.

    ``compilable`` names the part that ``module.compile_cnn=true`` hands to ``torch.compile``:
    the convolutional stack, not the whole network, because graphs break at RNNs (pytorch #167275).
    """

    # True when the network reads a frozen backbone's features: a run then computes each clip's
    # ``features_of(spec)`` once, caches them, and trains ``from_features(features)`` alone on them
    # (metalcore.training.probe); such a network also gives the ``fingerprint()`` of those features.
    frozen = False

    def __init__(self, num_classes: int, in_channels: int, n_mels: int) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.n_mels = num_classes, in_channels, n_mels

    def compilable(self) -> nn.Module | None:
        """The submodule worth compiling; None when nothing is (the default)."""
        return None

    def load_pretrained(self, cache_dir: Path) -> dict[str, str] | None:
        """Load published weights before training (fetched into ``cache_dir`` on first use) and return
        their source (package, version, sha256, licence), which the checkpoint records; None: the
        network trains from scratch (the default). Never called on a checkpoint, which holds its own."""
        return None

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups; a group's ``lr_scale`` multiplies the configured learning
        rate (a pretrained backbone learns slower than its new head). Frozen parameters are left out."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


def check_network(net: nn.Module, num_classes: int, in_channels: int, n_mels: int, frames: int) -> None:
    """Raise ``ValueError`` saying how ``net`` breaks the contract for this data and front-end.

    Runs one batch of two silent clips through it (in eval mode, its mode restored), so a network
    that cannot take the segment's frames fails here rather than in the first training step.
    """
    if not isinstance(net, Network):
        raise ValueError(f"{type(net).__module__}.{type(net).__qualname__} is not a metalcore.models.base.Network")
    declared, expected = (net.num_classes, net.in_channels, net.n_mels), (num_classes, in_channels, n_mels)
    if declared != expected:
        raise ValueError(
            f"is built for (num_classes, in_channels, n_mels) = {declared}, but the data and front-end give {expected}"
        )
    training = net.training
    try:
        with torch.no_grad():
            logits = net.eval()(torch.zeros(2, in_channels, n_mels, frames))
    except RuntimeError as err:
        raise ValueError(
            f"cannot take a spectrogram of {frames} frames: {str(err).splitlines()[0] if str(err) else err}"
        ) from None
    finally:
        net.train(training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"returns {got} for a batch of 2, not logits of shape (2, {num_classes})")
