"""The frozen probe's data: every clip's backbone features computed once, cached, and served to the head.

A frozen backbone gives a clip the same features in every epoch, every run and every fold, so
they are computed once per clip and kept on disk beside the decoded audio, one file per track,
keyed by everything that changes them: the backbone's weights and the output read, the
front-end, the cached audio entry, the segment length and the crop positions. Training the head
then takes seconds on a CPU. The crops are the fixed grid that validation and test already use
(``data.segments_per_track`` per track); training draws from them at random each epoch (by artist
with ``data.sampling=artist``), since random crops anywhere would need the backbone again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, Dataset

from metalcore.audio.pcm import to_float
from metalcore.core.files import atomic_file
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.segments import RandomCrops, SegmentDataset, grid
from metalcore.models.base import Network

log = logging.getLogger(__name__)
VERSION = 1  # of the cache's layout and of how features are computed; a change makes every entry new


def frontend_fingerprint(frontend: nn.Module) -> str:
    """Hash of the front-end's class, settings and buffers (its filterbank, window...)."""
    digest = hashlib.sha256(f"{type(frontend).__module__}.{type(frontend).__qualname__}".encode())
    for name in ("sample_rate", "n_mels", "n_fft", "hop_length"):
        digest.update(f"|{name}={getattr(frontend, name, None)}".encode())
    for name, tensor in frontend.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Clip features of a frozen network, one ``.npy`` per (features, track, crops) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, model: str, track: Path, frames: int, length: int, starts: np.ndarray) -> str:
        """The file name for a track's crops: ``model`` (network and front-end), audio entry, crops."""
        what = [VERSION, model, track.name, int(frames), int(length), [int(s) for s in starts]]
        return hashlib.blake2b(json.dumps(what).encode(), digest_size=20).hexdigest()

    def features(
        self,
        frontend: nn.Module,
        net: Network,
        dataset: SegmentDataset,
        per_track: int,
        device: torch.device,
        batch_size: int = 32,
    ) -> tuple[torch.Tensor, int]:
        """``(tracks, per_track, width)`` features of the grid's crops of every track of ``dataset``,
        and how many tracks had to be computed (the rest came from the cache)."""
        model = hashlib.sha256(f"{net.fingerprint()}|{frontend_fingerprint(frontend)}".encode()).hexdigest()
        keys = grid(dataset.frames, dataset.length, per_track)
        starts = keys[:, 1].reshape(len(dataset), per_track)
        paths = [
            self.root / f"{self.key(model, Path(p), f, dataset.length, s)}.npy"
            for p, f, s in zip(dataset.paths, dataset.frames, starts)
        ]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        if missing:
            computed = self._compute(frontend, net, dataset, keys, missing, per_track, device, batch_size)
            for i, values in zip(missing, computed):
                buffer = io.BytesIO()
                np.save(buffer, values)
                with atomic_file(paths[i]) as f:  # concurrent sweep jobs may write the same entry: either is whole
                    f.write(buffer.getvalue())
        return torch.from_numpy(np.stack([np.load(p) for p in paths])), len(missing)

    @staticmethod
    def _compute(
        frontend: nn.Module,
        net: Network,
        dataset: SegmentDataset,
        keys: np.ndarray,
        tracks: list[int],
        per_track: int,
        device: torch.device,
        batch_size: int,
    ) -> list[np.ndarray]:
        """``features_of(frontend(clip))`` for every crop of ``tracks``, in fp32 and eval mode, batched."""
        wanted = keys.reshape(len(dataset), per_track, 2)[tracks].reshape(-1, 2)
        modes = frontend.training, net.training
        frontend.eval().to(device), net.eval().to(device)
        out = []
        try:
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                for begin in range(0, len(wanted), batch_size):
                    clips = [dataset[tuple(k)][0] for k in wanted[begin : begin + batch_size].tolist()]
                    audio = to_float(torch.stack(clips).to(device))
                    out.append(net.features_of(frontend(audio)).float().cpu().numpy())
        finally:
            frontend.train(modes[0]), net.train(modes[1])
        return list(np.concatenate(out).reshape(len(tracks), per_track, -1))


class FeatureClips(Dataset):
    """Key ``(track, crop)`` -> ``(features (width,), label, track)``: a batch as the module's steps take it."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray) -> None:
        self.features, self.labels = features, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        track, crop = key
        return self.features[track, crop], int(self.labels[track]), int(track)


class ProbeData(LightningDataModule):
    """A ``MusicDataModule`` whose clips reach the module as a frozen network's cached features.

    Everything else (classes, split, track lists, durations, counts) is the wrapped module's: an
    attribute this class lacks is read from it, so callbacks and the run record read both alike.
    """

    def __init__(self, data: MusicDataModule, frontend: nn.Module, net: Network) -> None:
        super().__init__()
        self.data, self.frontend, self.net = data, frontend, net
        self.cache = FeatureCache(data.cache.root / "features")
        self.clips: dict[str, FeatureClips] = {}

    def __getattr__(self, name: str):
        if name == "data":  # not set yet (during construction): no wrapped module to ask
            raise AttributeError(name)
        return getattr(self.data, name)

    def prepare_data(self) -> None:
        self.data.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.clips:
            return
        self.data.setup(stage)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        computed = 0
        for split, dataset in self.data.datasets.items():
            features, fresh = self.cache.features(
                self.frontend, self.net, dataset, self.data.segments_per_track, device, self.data.batch_size
            )
            self.clips[split], computed = FeatureClips(features, dataset.labels), computed + fresh
        tracks = sum(len(c) for c in self.clips.values())
        log.info(
            "clip features of %d tracks: %d computed, %d from %s", tracks, computed, tracks - computed, self.cache.root
        )

    def _loader(self, split: str, sampler) -> DataLoader:
        return DataLoader(self.clips[split], batch_size=self.data.batch_size, sampler=sampler, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        per_track, tracks = self.data.segments_per_track, len(self.clips["train"])
        groups = self.data.train_artists() if self.data.sampling == "artist" else None
        # RandomCrops over crop numbers: a "track" of per_track frames and crops of length 1
        crops = RandomCrops(np.full(tracks, per_track), 1, per_track, self.data.seed, groups)
        return self._loader("train", crops)

    def _grid(self, split: str) -> DataLoader:
        per_track = self.data.segments_per_track
        keys = grid(np.full(len(self.clips[split]), per_track), 1, per_track)  # every crop of every track, in order
        return self._loader(split, [tuple(k) for k in keys.tolist()])

    def val_dataloader(self) -> DataLoader:
        return self._grid("val")

    def test_dataloader(self) -> DataLoader:
        return self._grid("test")
