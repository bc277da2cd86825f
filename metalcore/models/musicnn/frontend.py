"""musicnn's own front-end: 16 kHz waveforms -> the log-compressed Mel patches its weights were trained on.

musicnn computes ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)``
(centred Hann STFT, power 2, Slaney-scale filters with Slaney area normalisation), casts the Mel
power to float16, and takes ``np.log10(10000 * x + 1)``, which under the NumPy it pins (<1.17,
value-based casting) promotes to float32. This module does the same in PyTorch: the filterbank is
librosa's formula computed in float64 as librosa does, the STFT is reflect-padded as the librosa of
2019 the models were trained with padded it, and the power is rounded to float16 before the log,
so that rounding is reproduced. One difference, on purpose: a Mel power above float16's largest
value (65504) became infinity in the original; here it saturates at 65504.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.models.frontend import Frontend, PowerSpectrogram

SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS = 16000, 512, 256, 96  # musicnn/configuration.py
PATCH_FRAMES = 187  # the 3 s patches the models were trained on: librosa.time_to_frames(3) + 1
_FLOAT16_MAX = 65504.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's Mel scale (librosa's default, ``htk=False``): linear below 1 kHz, logarithmic above."""
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (math.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0)), hz)


def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``librosa.filters.mel(sr, n_fft, n_mels)`` (fmin 0, fmax sr / 2, Slaney norm): ``(n_mels, n_fft // 2 + 1)``.

    Computed in float64 and rounded once to float32, as librosa does; torchaudio's float32
    computation differs by up to 4e-6 relative, enough to flip float16 roundings downstream.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


class MusicnnFrontend(Frontend):
    """Waveforms ``(batch, channels, samples)`` at 16 kHz -> log-Mel ``(batch, 1, 96, frames)``.

    Channels are averaged to mono (as ``librosa.load`` does); ``frames = samples // 256 + 1``. The
    layout is metalcore's (bands before frames, like ``MelFrontend``'s) so the rest of the pipeline
    treats both alike; ``Musicnn`` turns it into the (frames, bands) layout of the original.
    Nothing here is learned: the original's normalisation is the network's first batch norm.
    """

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH
    ) -> None:
        """Every argument is fixed by the pretrained weights; they are arguments so that configs can
        read them (``${features.n_mels}``) and a changed one is refused in one line, not ignored."""
        super().__init__()
        if sample_rate != SAMPLE_RATE:
            raise UserError(
                f"data.sample_rate={sample_rate}: musicnn's weights were trained on {SAMPLE_RATE} Hz audio; "
                f"set data.sample_rate={SAMPLE_RATE}"
            )
        for key, value, fixed in (
            ("n_mels", n_mels, N_MELS),
            ("n_fft", n_fft, N_FFT),
            ("hop_length", hop_length, HOP_LENGTH),
        ):
            if value != fixed:
                raise UserError(
                    f"features.{key}={value}: musicnn's weights were trained with {fixed}; leave it at {fixed}"
                )
        self.sample_rate, self.n_mels, self.n_fft, self.hop_length = sample_rate, N_MELS, N_FFT, HOP_LENGTH
        self.spectrogram = PowerSpectrogram(N_FFT, HOP_LENGTH)
        self.register_buffer("filterbank", torch.from_numpy(slaney_filterbank(SAMPLE_RATE, N_FFT, N_MELS)))

    def check_segment(self, samples: int) -> None:
        """Refuse, before any training, segments that are not the 3 s patches musicnn's models were trained
        on (a centred 3 s clip gives 188 frames, one more than a patch): shorter ones starve its 128-frame
        temporal filters, longer ones pool over spans it never saw."""
        if self.frames(samples) not in (PATCH_FRAMES, PATCH_FRAMES + 1):
            raise UserError(
                f"data.segment_seconds={samples / self.sample_rate:g}: musicnn's models were trained on 3 s "
                f"patches ({PATCH_FRAMES} frames); set data.segment_seconds=3 (model=musicnn does)"
            )

    def power_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` -> float32 Mel power ``(batch, 1, 96, frames)`` of the mono mix."""
        mono = audio.float().mean(dim=1, keepdim=True)
        return torch.matmul(self.filterbank, self.spectrogram(mono))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio``: ``(batch, channels, samples)`` -> float32 ``(batch, 1, 96, frames)``, values in [0, 8.82]."""
        with torch.autocast(device_type=audio.device.type, enabled=False):
            power = self.power_mel(audio).clamp(max=_FLOAT16_MAX).half().float()  # rounded as the original
            return torch.log10(10000 * power + 1)
