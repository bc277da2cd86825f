"""The frozen probe's feature cache: each clip's features computed once, reused by every later run.

A stand-in frozen network (a fixed projection of each band's mean) keeps these tests independent of
any pretrained weights; ``tests/test_transfer.py`` runs the real ``model=musicnn``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metalcore.data.datamodule import MusicDataModule
from metalcore.models.base import Network
from metalcore.models.frontend import MelFrontend
from metalcore.training.probe import FeatureCache, ProbeData


class FrozenBands(Network):
    """A frozen 'backbone' (fixed random projection of band means) and a trainable linear head."""

    frozen = True

    def __init__(self, num_classes: int = 2, in_channels: int = 1, n_mels: int = 32) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        self.backbone = nn.Linear(in_channels * n_mels, 8).requires_grad_(False)
        self.head = nn.Linear(8, num_classes)
        self.calls = 0

    def features_of(self, spec: torch.Tensor) -> torch.Tensor:
        self.calls += len(spec)
        return self.backbone(spec.mean(-1).flatten(1))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features_of(spec))

    def fingerprint(self) -> str:
        return str(hash(tuple(self.backbone.weight.flatten().tolist())))


@pytest.fixture()
def data(cache_dir, demo_root) -> MusicDataModule:
    dm = MusicDataModule(
        str(demo_root), str(cache_dir), sample_rate=16000, channels=1, segment_seconds=2.0, segments_per_track=3
    )
    dm.prepare(progress=False)
    dm.setup()
    return dm


def test_features_are_computed_once_and_read_back_by_the_next_run(data, tmp_path):
    frontend, net = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256).eval(), FrozenBands()
    cache = FeatureCache(tmp_path / "features")
    dataset = data.datasets["train"]
    first, computed = cache.features(frontend, net, dataset, 3, torch.device("cpu"), batch_size=4)
    assert computed == len(dataset) and net.calls == 3 * len(dataset)
    assert first.shape == (len(dataset), 3, 8)
    again, computed = cache.features(frontend, net, dataset, 3, torch.device("cpu"))
    assert computed == 0 and net.calls == 3 * len(dataset), "the second run computed nothing"
    assert torch.equal(first, again)
    # the same clips through the network directly: the cache holds exactly what the backbone gives
    key = (0, int(np.rint(max(dataset.frames[0] - dataset.length, 0) / 2)))
    clip = torch.as_tensor(dataset[key][0], dtype=torch.float32)[None] / 32768
    with torch.no_grad():
        assert torch.allclose(net.features_of(frontend(clip))[0], first[0, 1], atol=1e-5)


def test_anything_that_changes_the_features_makes_a_new_entry(data, tmp_path):
    frontend, net = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256).eval(), FrozenBands()
    cache = FeatureCache(tmp_path / "features")
    dataset, cpu = data.datasets["val"], torch.device("cpu")
    cache.features(frontend, net, dataset, 3, cpu)
    assert cache.features(frontend, net, dataset, 2, cpu)[1] == len(dataset), "other crop positions"
    with torch.no_grad():
        net.backbone.weight.mul_(2)
    assert cache.features(frontend, net, dataset, 3, cpu)[1] == len(dataset), "other weights"
    other = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=128).eval()
    assert cache.features(other, net, dataset, 3, cpu)[1] == len(dataset), "another front-end"
    assert cache.features(other, net, dataset, 3, cpu)[1] == 0


def test_probe_data_serves_every_split_as_features_with_the_split_s_tracks(data, tmp_path):
    net = FrozenBands()
    probe = ProbeData(data, MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256), net)
    probe.setup()
    assert probe.classes == data.classes and probe.counts() == data.counts()
    assert probe.tracks("test") == data.tracks("test")
    test = data.datasets["test"]
    features, labels, tracks = next(iter(probe.test_dataloader()))
    assert features.shape[1] == 8 and features.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor(test.labels)[tracks]), "each clip carries its track's label"
    assert sum(len(b[1]) for b in probe.test_dataloader()) == 3 * len(test), "every crop of every test track once"
    epoch = [b for b in probe.train_dataloader()]
    assert sum(len(b[1]) for b in epoch) == 3 * len(data.datasets["train"])
    assert torch.equal(
        torch.cat([b[1] for b in epoch]).sort().values,
        torch.as_tensor(np.repeat(data.datasets["train"].labels, 3)).sort().values,
    )
