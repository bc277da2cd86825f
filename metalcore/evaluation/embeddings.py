"""Each track's pooled penultimate features in TensorBoard's projector: clusters, outliers, near-duplicates.

The input of the network's last linear layer is what the classifier separates the classes with. A
forward hook collects it for every segment during evaluation; a track's embedding is the mean over
its segments, as its probabilities are. In the projector (``tensorboard --logdir <folder>``,
PROJECTOR tab) a point is a track, coloured by class, split, prediction or confidence: a lone track
among the other class, a tight cluster of one artist or album, two tracks at the same spot
(duplicates) are all visible at a glance.
"""

from __future__ import annotations

import os
import shutil
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
    """One embedding (``tracks``) with a metadata row per vector, as TensorBoard's projector reads it.

    Written into a new folder beside ``folder`` that replaces it once complete: a failure leaves the
    earlier projector (or none), never half of one.
    """
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with SummaryWriter(str(partial)) as writer:
            writer.add_embedding(
                torch.from_numpy(np.stack(vectors)),
                metadata=[[cell(value) for value in row] for row in metadata],
                metadata_header=[cell(name) for name in header],
                tag="tracks",
            )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def cell(value: str) -> str:
    """A metadata cell TensorBoard can write and read: its file is strict UTF-8, tab-separated, one row a line.

    Bytes of a file name that are not UTF-8 are shown as ``\\xf6``; tabs and line breaks become spaces.
    """
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate({ord("\t"): " ", ord("\r"): " ", ord("\n"): " "})
