"""Each track's pooled penultimate features in TensorBoard's projector: clusters, outliers, near-duplicates.

The input of the network's last linear layer is what the classifier separates the classes with. A
forward hook collects it for every segment during evaluation; a track's embedding is the mean over
its segments, as its probabilities are. In the projector (``tensorboard --logdir <folder>``,
PROJECTOR tab) a point is a track, coloured by class, split, prediction or confidence: a lone track
among the other class, a tight cluster of one artist or album, two tracks at the same spot
(duplicates) are all visible at a glance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Features:
    """The segment features a hook has collected since the last ``take``."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.batches.append(inputs[0].detach().float().cpu())

    def take(self) -> np.ndarray | None:
        """The mean feature vector of the segments collected since the last call (one track's); None if none."""
        if not self.batches:
            return None
        pooled = torch.cat(self.batches).mean(0).numpy()
        self.batches = []
        return pooled


@contextmanager
def penultimate(classifier: nn.Module) -> Iterator[Features]:
    """Collect the input of the classifier's last ``nn.Linear`` (its head) while the block runs."""
    linears = [m for m in classifier.net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(classifier.net).__name__} has no linear layer to take features from")
    features = Features()
    handle = linears[-1].register_forward_pre_hook(features.hook)
    try:
        yield features
    finally:
        handle.remove()


def write_projector(folder: Path, vectors: list[np.ndarray], metadata: list[list[str]], header: list[str]) -> None:
    """One embedding (``tracks``) with a metadata row per vector, as TensorBoard's projector reads it."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as writer:
        writer.add_embedding(
            torch.from_numpy(np.stack(vectors)), metadata=metadata, metadata_header=header, tag="tracks"
        )
