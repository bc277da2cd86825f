"""A split's decoded audio held on the training device, with whole batches cut there.

When the audio fits in the accelerator's memory (the study's 216 tracks are about 9 GB of int16
at 44.1 kHz stereo; an H100 has 80 GB), copying it there once replaces DataLoader workers and a
host-to-device copy per step with one gather per batch. The keys come from the same samplers as
the memory-mapped loader, so a seed gives the same crops and the same samples on either path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.data.segments import SegmentDataset, Shard

CHOICES = ("auto", True, False)
SHARE_OF_FREE_MEMORY = 0.5  # "comfortably": the network, its activations and the optimiser need the rest


def resolve(on_device: str | bool, nbytes: int, device: torch.device) -> bool:
    """``data.on_device``: ``auto`` holds the audio on a CUDA device when it takes at most half its free memory.

    On the CPU the memory-mapped loader reads only what it needs, so ``auto`` keeps it; ``true``
    forces the in-memory path anywhere (the tests run it on the CPU).
    """
    if on_device not in CHOICES:
        raise UserError(f"data.on_device={on_device!r} must be auto, true or false")
    if on_device != "auto":
        return bool(on_device)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= SHARE_OF_FREE_MEMORY * free


class DeviceSegments:
    """Every track of a split in one int16 tensor on ``device``.

    Key lists -> ``(audio [B, C, length] int16, labels, tracks)``.

    Reads the same memory-mapped cache entries as ``SegmentDataset``, one track at a time, so the
    host never holds more than one track; windows running past a track's end are zero-padded as there.
    """

    def __init__(self, dataset: SegmentDataset, device: torch.device) -> None:
        frames = dataset.frames
        self.length, self.device = dataset.length, device
        self.frames = torch.as_tensor(frames, device=device)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(frames)[:-1]]), device=device)
        self.labels = torch.as_tensor(dataset.labels, device=device)
        self.audio = torch.empty((int(frames.sum()), dataset.channels), dtype=torch.int16, device=device)
        for track, start in enumerate(self.offsets.tolist()):
            n = int(frames[track])  # copy-on-write: a writable view of the read-only cache entry, nothing copied
            pcm = np.memmap(dataset.paths[track], dtype=np.int16, mode="c", shape=(n, dataset.channels))
            self.audio[start : start + n] = torch.from_numpy(pcm)
        self.steps = torch.arange(self.length, device=device)

    @property
    def nbytes(self) -> int:
        return self.audio.numel() * self.audio.element_size()

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = torch.as_tensor(keys, dtype=torch.int64).to(self.device, non_blocking=True)  # (B, 2): a few bytes
        tracks, starts = key[:, 0], key[:, 1]
        position = starts[:, None] + self.steps  # (B, length)
        inside = position < self.frames[tracks][:, None]
        rows = torch.where(inside, self.offsets[tracks][:, None] + position, 0)
        audio = self.audio[rows].masked_fill_(~inside[..., None], 0)  # (B, length, C)
        return audio.transpose(1, 2), self.labels[tracks], tracks  # (B, C, length)


class KeyBatches(Shard):
    """This rank's keys from ``sampler`` in lists of ``batch_size``, for a dataset that cuts a whole batch at once.

    A ``Shard`` (so a ``DistributedSampler``): Lightning neither wraps it again under DDP nor
    forgets to call ``set_epoch``, so the crops of an epoch are those of the memory-mapped loader.
    """

    def __init__(self, sampler: Sized, batch_size: int, rank: int = 0, world: int = 1, even: bool = False) -> None:
        super().__init__(sampler, rank, world, even)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(super().__len__() / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        keys = list(super().__iter__())
        return iter([keys[i : i + self.batch_size] for i in range(0, len(keys), self.batch_size)])
