"""Segments: (track, start sample) windows over cached audio, computed from durations alone.

Validation and test use a fixed grid of windows spread over each track; training draws fresh random
crops every epoch. Changing the segment length never re-decodes anything, it only changes these
numbers. Indices are NumPy arrays, not Python lists, so DataLoader workers share them cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from metalcore.core.errors import UserError
from metalcore.core.memory import most_that_fit

# bytes of memory per window while a split's windows are laid out: an upper bound over what
# tracemalloc shows for the grid of validation windows and for an epoch of training crops
WINDOW_BYTES = 200


def check_windows_fit(tracks: int, per_track: int) -> None:
    """Refuse ``per_track`` windows per track that the segment index could not hold in memory.

    Checked from the catalogue, before decoding: a huge value otherwise grows the process for
    minutes, silently, until the machine runs out of memory.
    """
    most, available = most_that_fit(WINDOW_BYTES * max(tracks, 1))
    if per_track <= most:
        return
    raise UserError(
        f"data.segments_per_track={per_track}: {tracks} tracks x {per_track} windows need about "
        f"{tracks * per_track * WINDOW_BYTES / 2**30:.0f} GiB for the segment index, more than half of the "
        f"{available:.1f} GiB of memory available; use at most {most} (60 is usual)"
    )


def grid(frames: np.ndarray, length: int, per_track: int) -> np.ndarray:
    """``per_track`` windows of ``length`` spread evenly over each track: ``(n, 2)`` rows of (track, start).

    A track shorter than ``length`` contributes windows at 0 (padded when read).
    """
    room = np.maximum(np.asarray(frames, dtype=np.int64) - length, 0)
    steps = np.linspace(0.0, 1.0, per_track) if per_track > 1 else np.zeros(1)
    starts = np.rint(room[:, None] * steps[None, :]).astype(np.int64)
    tracks = np.repeat(np.arange(len(room)), per_track)
    return np.stack([tracks, starts.ravel()], axis=1)


class RandomCrops(Sampler):
    """``per_track`` random windows from every track, shuffled, new ones each epoch.

    The crops of epoch ``e`` depend only on ``(seed, e)``: Lightning calls ``set_epoch`` each epoch,
    and each pass also advances the epoch so plain loops draw new crops too.

    With ``groups`` (one integer per track, e.g. its artist) the epoch keeps its length but every
    group gets the same number of crops (within one), spread over its tracks at random: a band with
    twenty tracks weighs as much as a band with one, so a prolific band does not define its class.
    """

    def __init__(
        self, frames: np.ndarray, length: int, per_track: int, seed: int, groups: np.ndarray | None = None
    ) -> None:
        self.room = np.maximum(np.asarray(frames, dtype=np.int64) - length, 0)
        self.per_track, self.seed, self.epoch = per_track, seed, 0
        self.groups = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.room) * self.per_track

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        if self.groups is None:
            tracks = rng.permutation(np.repeat(np.arange(len(self.room)), self.per_track))
        else:
            tracks = self._balanced(rng)
        starts = (rng.random(len(tracks)) * (self.room[tracks] + 1)).astype(np.int64)
        return iter(zip(tracks.tolist(), starts.tolist()))

    def _balanced(self, rng: np.random.Generator) -> np.ndarray:
        """The epoch's tracks, shuffled: every group drawn equally often (the remainder by lot), and
        within a group its tracks in turn, starting from a random one."""
        n_groups, total = self.groups.max() + 1, len(self)
        counts = np.full(n_groups, total // n_groups)
        counts[rng.choice(n_groups, total % n_groups, replace=False)] += 1
        slots = np.repeat(np.arange(n_groups), counts)  # (total,) the group of each crop, in group order
        turn = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)  # the crop's number in its group
        members = np.lexsort((rng.random(len(self.groups)), self.groups))  # tracks by group, shuffled within
        first = np.searchsorted(self.groups[members], slots)
        size = np.bincount(self.groups, minlength=n_groups)[slots]
        return rng.permutation(members[first + turn % size])


class Shard(DistributedSampler):
    """This process's share of a sampler's keys under DDP: every ``world``-th key from ``rank`` on.

    Training (``even=True``) drops the last few keys so every rank takes the same number of steps;
    evaluation keeps them all, so each segment is scored exactly once (Lightning's own distributed
    sampler pads with repeats, which would count some clips twice). Being a ``DistributedSampler``
    tells Lightning the data is already split and must not be wrapped again.
    """

    def __init__(self, sampler: Sized, rank: int, world: int, even: bool) -> None:
        super().__init__(sampler, num_replicas=world, rank=rank, shuffle=False, drop_last=even)
        self.sampler, self.even = sampler, even

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.num_replicas if self.even else len(range(self.rank, n, self.num_replicas))

    def __iter__(self) -> Iterator[Any]:
        keys = list(self.sampler)
        if self.even:
            keys = keys[: len(keys) // self.num_replicas * self.num_replicas]
        return iter(keys[self.rank :: self.num_replicas])


class SegmentDataset(Dataset):
    """Reads a window of a cached track: key ``(track, start)`` -> ``(audio [C, length] int16, label, track)``.

    The samples stay int16 (``metalcore.audio.pcm.to_float`` on the device makes them float). Only paths and sizes are
    pickled into workers; each worker opens the memory maps it touches.
    """

    def __init__(self, paths: np.ndarray, frames: np.ndarray, labels: np.ndarray, channels: int, length: int) -> None:
        self.paths = np.asarray(paths, dtype=str)
        self.frames = np.asarray(frames, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.channels, self.length = channels, length
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _map(self, track: int) -> np.memmap:
        if track not in self._maps:
            self._maps[track] = np.memmap(
                self.paths[track], dtype=np.int16, mode="r", shape=(int(self.frames[track]), self.channels)
            )
        return self._maps[track]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        track, start = key
        chunk = self._map(track)[start : start + self.length]
        audio = torch.from_numpy(np.array(chunk.T, order="C"))  # a copy: the map is read-only
        if audio.shape[1] < self.length:  # a track shorter than a segment: zero padding at the end
            audio = torch.nn.functional.pad(audio, (0, self.length - audio.shape[1]))
        return audio, int(self.labels[track]), int(track)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}
