"""The study's data path, as its code ran it, for the baselines: one WAV piece per clip, Mel on the CPU.

Its dataset loaded a piece (1/60 of a track), zero-padded it to 5.5 s and computed torchaudio's
``MelSpectrogram`` (n_fft 1024, 64 bands, its other defaults) and ``AmplitudeToDB`` inside
``__getitem__``, in the DataLoader's workers. WAV pieces are read with the standard library, the
cheapest reader there is, so the baseline is not slowed by the reader. ``WholeFileClips`` is the
older naive path (decode the clip's whole source file every time), kept as a second row.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from torchaudio import transforms as T

from metalcore.audio.decode import decode
from metalcore.audio.pcm import pcm_to_float
from metalcore.benchmarks.sources import CHANNELS, RATE, SEGMENT_SECONDS

N_FFT, N_MELS = 1024, 64  # the study's front-end; hop n_fft // 2 = 512, torchaudio's default
LENGTH = round(SEGMENT_SECONDS * RATE)


def read_wav(path: str) -> np.ndarray:
    """A 16-bit WAV as float32 ``[channels, samples]`` in [-1, 1)."""
    with wave.open(path, "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).reshape(-1, f.getnchannels())
    return pcm_to_float(pcm)


class StudyMel(torch.nn.Module):
    """The study's per-clip features: ``(channels, samples)`` -> dB Mel ``(channels, 64, frames)``."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = T.MelSpectrogram(sample_rate=RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.to_db = T.AmplitudeToDB()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(audio))


def pad(audio: np.ndarray) -> torch.Tensor:
    """Zero-pad (or cut) ``[channels, samples]`` to the 5.5 s clip, as the study's dataset did."""
    clip = np.zeros((CHANNELS, LENGTH), np.float32)
    part = audio[:, :LENGTH]
    clip[:, : part.shape[1]] = part
    return torch.from_numpy(clip)


class StudyClips(torch.utils.data.Dataset):
    """The study's dataset: index -> ``(dB Mel [C, 64, frames], label)`` from one WAV piece."""

    def __init__(self, pieces: list[Path], labels: list[int]) -> None:
        self.pieces, self.labels = [str(p) for p in pieces], list(labels)
        self.features = StudyMel()

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with torch.no_grad():
            return self.features(pad(read_wav(self.pieces[index]))), self.labels[index]


class WholeFileClips(torch.utils.data.Dataset):
    """The naive path: key ``(track, start)`` decodes the track's whole source file, then the study's features."""

    def __init__(self, sources: list[Path]) -> None:
        self.sources = [str(s) for s in sources]
        self.features = StudyMel()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        track, start = key
        audio = decode(self.sources[track], RATE, CHANNELS)  # the whole file, every time
        with torch.no_grad():
            return self.features(pad(audio[:, start:])), track % 2
