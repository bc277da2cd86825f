"""Perturbations a real collection contains, applied to whole decoded tracks before scoring again.

Genre accuracy can rest on production rather than music (Sturm 2013; Rodriguez-Algarra, Sturm &
Dixon 2019 probe systems by intervening on the audio): a classifier that falls apart on a 64 kbps
mp3, a quiet master or a mono rip has learnt the recording. Each perturbation maps float audio
``(channels, samples)`` in [-1, 1] at a sample rate to the same; they are torchaudio's functions
(noise at a set SNR, sinc resampling, phase vocoder, gain) and FFmpeg's mp3 encoder,
not hand-written DSP.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from metalcore.audio.decode import decode
from metalcore.audio.encode import write_audio
from metalcore.audio.pcm import float_to_pcm, pcm_to_float
from metalcore.core.errors import UserError

Perturbation = Callable[[torch.Tensor, int], torch.Tensor]


def noise(audio: torch.Tensor, sample_rate: int, snr_db: float, seed: int = 0) -> torch.Tensor:
    """White noise added at ``snr_db`` below the track's own power (per channel), seeded."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(audio.shape, generator=generator, dtype=audio.dtype)
    return AF.add_noise(audio, white, torch.full(audio.shape[:-1], float(snr_db)))


def mp3(audio: torch.Tensor, sample_rate: int, kbps: int) -> torch.Tensor:
    """Encoded to mp3 at ``kbps`` by FFmpeg's LAME and decoded back (encoder delay and all)."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_audio(Path(folder) / "x.mp3", audio.numpy(), sample_rate, bit_rate=kbps * 1000)
        return torch.from_numpy(decode(path, sample_rate, audio.shape[0]))


def lowpass(audio: torch.Tensor, sample_rate: int, cutoff_hz: int) -> torch.Tensor:
    """Everything above ``cutoff_hz`` removed: down to twice the cut-off and back with sinc resampling
    (a steep windowed-sinc filter), as a low-bandwidth source would leave it."""
    return AF.resample(AF.resample(audio, sample_rate, 2 * cutoff_hz), 2 * cutoff_hz, sample_rate)


def gain(audio: torch.Tensor, sample_rate: int, db: float) -> torch.Tensor:
    """Louder or quieter by ``db``; what goes past full scale is clipped, as a hot master clips."""
    return AF.gain(audio, db).clamp(-1.0, 1.0)


def pitch(audio: torch.Tensor, sample_rate: int, semitones: int) -> torch.Tensor:
    """Shifted by ``semitones`` (+-1) at the same tempo: stretched by the semitone's ratio, then resampled.

    The ratio is taken as 89/84 (2 ** (1/12) to within 0.1 cent): ``torchaudio.functional.pitch_shift``
    resamples by a ratio of large integers, which takes far longer than the audio lasts.
    """
    if abs(semitones) != 1:
        raise ValueError("pitch shifts of one semitone only")
    up, down = (89, 84) if semitones > 0 else (84, 89)
    longer = stretch(audio, sample_rate, down / up)
    shifted = AF.resample(longer, up, down)
    return torch.nn.functional.pad(shifted, (0, max(0, audio.shape[-1] - shifted.shape[-1])))[..., : audio.shape[-1]]


def stretch(audio: torch.Tensor, sample_rate: int, rate: float) -> torch.Tensor:
    """Played ``rate`` times as fast at the same pitch (phase vocoder on a 2048-point STFT).

    Audio shorter than the window is padded with silence first (the STFT's reflection needs half a
    window) and the result cut back to its stretched length.
    """
    n_fft, hop = 2048, 512
    length = audio.shape[-1]
    padded = torch.nn.functional.pad(audio, (0, max(0, n_fft - length)))
    window = torch.hann_window(n_fft)
    spec = torch.stft(padded, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, torch.pi * hop, spec.shape[-2])[..., None]
    stretched = AF.phase_vocoder(spec, rate, advance)
    out = torch.istft(stretched, n_fft, hop, window=window, length=round(padded.shape[-1] / rate))
    return out[..., : round(length / rate)]


def mono(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Both channels replaced by their mean: a mono rip played as stereo."""
    return audio.mean(0, keepdim=True).expand_as(audio).clone()


PERTURBATIONS: dict[str, Perturbation] = {
    "noise_20db": partial(noise, snr_db=20),
    "noise_10db": partial(noise, snr_db=10),
    "mp3_64k": partial(mp3, kbps=64),
    "lowpass_4k": partial(lowpass, cutoff_hz=4000),
    "gain_-12db": partial(gain, db=-12),
    "gain_+12db": partial(gain, db=12),
    "pitch_-1": partial(pitch, semitones=-1),
    "pitch_+1": partial(pitch, semitones=1),
    "stretch_0.9": partial(stretch, rate=0.9),
    "stretch_1.1": partial(stretch, rate=1.1),
    "mono": mono,
}


def chosen(names: str) -> list[str]:
    """``all`` or a comma-separated list, checked against the known perturbations."""
    if names == "all":
        return list(PERTURBATIONS)
    picked = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in picked if n not in PERTURBATIONS]
    if unknown or not picked:
        raise UserError(
            f"--perturb {names}: unknown {unknown or 'empty list'}; choose all or from {list(PERTURBATIONS)}"
        )
    return picked


def on_pcm(perturbation: Perturbation, sample_rate: int) -> Callable[[np.ndarray], np.ndarray]:
    """The perturbation as the whole-track transform inference takes: int16 ``(frames, channels)`` both ways."""

    def transform(pcm: np.ndarray) -> np.ndarray:
        return float_to_pcm(perturbation(torch.from_numpy(pcm_to_float(pcm)), sample_rate).numpy())

    return transform
