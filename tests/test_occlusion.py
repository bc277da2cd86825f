"""The occlusion map points at the patches a decision depends on, and nowhere else."""

from __future__ import annotations

import numpy as np
import torch

from metalcore.evaluation.occlusion import occlusion
from metalcore.inference.checkpoint import Classifier
from metalcore.models.base import Network
from metalcore.models.frontend import MelFrontend

BAND = 21  # the only Mel band the model below looks at


class OneBand(Network):
    """Logits from the mean level of one Mel band: a model that, by construction, hears nothing else."""

    def __init__(self, num_classes: int, in_channels: int, n_mels: int) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        self.scale = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        level = mel[:, :, BAND, :].mean((1, 2))  # (batch,)
        return torch.stack([level, -level], 1) * self.scale


def test_occlusion_marks_the_one_band_a_model_looks_at():
    frontend = MelFrontend(sample_rate=16000, n_mels=64, n_fft=512, hop_length=256)
    classifier = Classifier(frontend, OneBand(2, 2, 64), ["a", "b"], 16000, 2, 2.0)
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.3, 0.3, (2, 32000)).astype(np.float32))
    result = occlusion(classifier, audio, grid=(8, 5))
    assert result.drop.shape == (8, 5) and result.mel.shape == (64, 32000 // 256 + 1)
    row = np.searchsorted(result.band_edges, BAND, side="right") - 1  # the patch row holding the band
    assert result.band_edges[row] <= BAND < result.band_edges[row + 1]
    assert (result.drop[row] > 1e-3).all()  # masking the band anywhere in time weakens the decision
    others = np.delete(result.drop, row, axis=0)
    assert np.abs(others).max() < 1e-6  # masking any other band changes nothing
    assert result.probs[result.target] == result.probs.max()
