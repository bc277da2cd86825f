"""Training augmentation on the accelerator: waveform transforms, mixup and SpecAugment, in one place.

A model that hears a band's production (its EQ, room, noise, tuning, level) can score well on
tracks by bands it has heard and badly on new ones. These transforms vary exactly those things
during training, so that genre is the only cue left that every clip of a class shares.

Everything runs on whole batches on the device the batch is on: random parameters are a few
numbers per batch, drawn from a seeded NumPy generator; noise is drawn on the device from a
generator seeded from it. Each transform applies to a random share ``p`` of the batch's clips.
The LightningModule calls ``Augment`` in ``training_step`` only: validation, test, ``evaluate``
and ``predict`` never see it (the inference ``Classifier`` holds no augmentation at all), and it
has no parameters or buffers, so checkpoints are the same with or without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio import functional as AF

from metalcore.core.errors import UserError


class Random:
    """The random draws of one ``Augment`` on one device, all following from its seed."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.numbers = np.random.default_rng(seed)
        self.device = device
        self.noise = torch.Generator(device=device).manual_seed(int(self.numbers.integers(2**62)))

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32).to(self.device, non_blocking=True)

    def uniform(self, low: float, high: float, n: int) -> torch.Tensor:
        """``n`` draws, uniform in [low, high], as a float32 tensor on the device."""
        return self._tensor(self.numbers.uniform(low, high, n))

    def beta(self, alpha: float, n: int) -> torch.Tensor:
        return self._tensor(self.numbers.beta(alpha, alpha, n))

    def chosen(self, p: float, n: int) -> torch.Tensor:
        """Which of ``n`` clips a transform applied with probability ``p`` touches: indices on the device."""
        return torch.as_tensor(np.flatnonzero(self.numbers.random(n) < p), device=self.device)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.as_tensor(self.numbers.permutation(n), device=self.device)

    def gaussian(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``like``, drawn on its device."""
        return torch.randn(like.shape, generator=self.noise, device=like.device, dtype=like.dtype)


class Transform(nn.Module):
    """A waveform transform: ``(batch, channels, samples)`` -> the same shape, on a share ``p`` of the clips."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise UserError(f"augment: p={p} must be between 0 and 1")
        self.p = p

    def forward(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        picked = rand.chosen(self.p, len(audio))
        if not len(picked):
            return audio
        if len(picked) == len(audio):  # p = 1, as the default gain: no copy of the batch to write into
            return self.apply(audio, rand)
        out = audio.clone()
        out[picked] = self.apply(audio[picked], rand)
        return out

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        """The transform on every clip of ``audio`` (the chosen ones)."""
        raise NotImplementedError


def _ordered(low: float, high: float, what: str) -> None:
    if low > high:
        raise UserError(f"augment: {what} range [{low}, {high}] is empty; the first value must not exceed the second")


class RandomGain(Transform):
    """Each clip louder or softer by a gain in dB drawn from [min_db, max_db] (a mastering level)."""

    def __init__(self, min_db: float = -6.0, max_db: float = 6.0, p: float = 1.0) -> None:
        super().__init__(p)
        _ordered(min_db, max_db, "gain")
        self.min_db, self.max_db = min_db, max_db

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        db = rand.uniform(self.min_db, self.max_db, len(audio))
        return audio * AF.DB_to_amplitude(db, ref=1.0, power=0.5)[:, None, None]


def _spectral(audio: torch.Tensor, sample_rate: int, gain) -> torch.Tensor:
    """``audio`` filtered by an amplitude response ``gain(freqs) -> (batch, bins)`` applied to its spectrum.

    One FFT over each whole clip: batched, exact and per clip, where torchaudio's biquads take one
    setting per call and run sample by sample.
    """
    samples = audio.shape[-1]
    freqs = torch.fft.rfftfreq(samples, 1.0 / sample_rate, device=audio.device)
    spectrum = torch.fft.rfft(audio.float(), dim=-1)
    return torch.fft.irfft(spectrum * gain(freqs)[:, None, :], n=samples, dim=-1).to(audio.dtype)


class RandomEQ(Transform):
    """A tilt (dB per octave around 1 kHz) and one bell (a Gaussian in octaves) per clip: another studio's EQ."""

    def __init__(
        self,
        sample_rate: int,
        max_tilt_db: float = 2.0,
        max_peak_db: float = 6.0,
        min_peak_hz: float = 100.0,
        max_peak_hz: float = 8000.0,
        peak_octaves: float = 1.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        _ordered(min_peak_hz, max_peak_hz, "peak frequency")
        self.sample_rate, self.max_tilt_db, self.max_peak_db = sample_rate, max_tilt_db, max_peak_db
        self.min_peak_hz, self.max_peak_hz, self.peak_octaves = min_peak_hz, max_peak_hz, peak_octaves

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        n = len(audio)
        tilt = rand.uniform(-self.max_tilt_db, self.max_tilt_db, n)[:, None]
        peak = rand.uniform(-self.max_peak_db, self.max_peak_db, n)[:, None]
        centre = rand.uniform(math.log2(self.min_peak_hz), math.log2(self.max_peak_hz), n)[:, None]

        def gain(freqs: torch.Tensor) -> torch.Tensor:
            octaves = torch.log2(freqs.clamp(min=20.0))[None, :]  # flat below 20 Hz
            db = tilt * (octaves - math.log2(1000.0)) + peak * torch.exp(
                -0.5 * ((octaves - centre) / self.peak_octaves) ** 2
            )
            return AF.DB_to_amplitude(db, ref=1.0, power=0.5)

        return _spectral(audio, self.sample_rate, gain)


class BandLimit(Transform):
    """Nothing above a cut-off drawn from [min_hz, max_hz]: the low-pass a lossy encoder applies first."""

    def __init__(self, sample_rate: int, min_hz: float = 4000.0, max_hz: float = 16000.0, p: float = 1.0) -> None:
        super().__init__(p)
        _ordered(min_hz, max_hz, "cut-off")
        self.sample_rate, self.min_hz, self.max_hz = sample_rate, min_hz, max_hz

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        cutoff = rand.uniform(self.min_hz, self.max_hz, len(audio))[:, None]
        return _spectral(audio, self.sample_rate, lambda freqs: (freqs[None, :] <= cutoff).float())


class AddNoise(Transform):
    """White noise at a signal-to-noise ratio in dB drawn from [min_snr_db, max_snr_db] (torchaudio's add_noise)."""

    def __init__(self, min_snr_db: float = 15.0, max_snr_db: float = 40.0, p: float = 1.0) -> None:
        super().__init__(p)
        _ordered(min_snr_db, max_snr_db, "SNR")
        self.min_snr_db, self.max_snr_db = min_snr_db, max_snr_db

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        snr = rand.uniform(self.min_snr_db, self.max_snr_db, len(audio))[:, None].expand(audio.shape[:2])
        return AF.add_noise(audio, rand.gaussian(audio), snr)


def _stretch(audio: torch.Tensor, rate: float, samples: int, n_fft: int) -> torch.Tensor:
    """``audio`` played ``rate`` times faster at the same pitch (phase vocoder), cut or zero-padded to ``samples``."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=audio.device)
    flat = audio.float().reshape(-1, audio.shape[-1])
    spec = torch.stft(flat, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2], device=audio.device)[..., None]
    spec = AF.phase_vocoder(spec, rate, advance)
    out = torch.istft(spec, n_fft, hop, window=window, length=round(flat.shape[-1] / rate))
    out = F.pad(out, (0, max(0, samples - out.shape[-1])))[..., :samples]
    return out.reshape(*audio.shape[:-1], samples).to(audio.dtype)


class TimeStretch(Transform):
    """Faster or slower at the same pitch, by a rate from [min_rate, max_rate] drawn once per batch.

    One rate per batch keeps the phase vocoder batched; every batch draws another.
    """

    def __init__(self, min_rate: float = 0.95, max_rate: float = 1.05, n_fft: int = 1024, p: float = 0.5) -> None:
        super().__init__(p)
        _ordered(min_rate, max_rate, "rate")
        if min_rate <= 0:
            raise UserError(f"augment: TimeStretch min_rate={min_rate} must be positive")
        self.min_rate, self.max_rate, self.n_fft = min_rate, max_rate, n_fft

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        rate = float(rand.numbers.uniform(self.min_rate, self.max_rate))
        return _stretch(audio, rate, audio.shape[-1], self.n_fft)


class PitchShift(Transform):
    """Higher or lower at the same tempo, by cents from [min_cents, max_cents] drawn once per batch.

    Resampling by a ratio of small integers (``resolution`` steps per unit, so torchaudio's
    resampling kernel stays short) raises the pitch; the phase vocoder then restores the length.
    The shift is the ratio's, within half a step (about 4 cents at the default 200).
    """

    def __init__(
        self,
        min_cents: float = -50.0,
        max_cents: float = 50.0,
        n_fft: int = 1024,
        resolution: int = 200,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        _ordered(min_cents, max_cents, "pitch")
        self.min_cents, self.max_cents, self.n_fft, self.resolution = min_cents, max_cents, n_fft, resolution

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        cents = float(rand.numbers.uniform(self.min_cents, self.max_cents))
        up = round(self.resolution * 2 ** (cents / 1200))
        if up == self.resolution:
            return audio
        # read ``up`` samples where there were ``resolution``: every frequency x up / resolution, and shorter
        higher = AF.resample(audio.float(), orig_freq=up, new_freq=self.resolution)
        return _stretch(higher, higher.shape[-1] / audio.shape[-1], audio.shape[-1], self.n_fft).to(audio.dtype)


class Mixup(nn.Module):
    """Each clip blended with another of the batch, its target blended the same way (Zhang et al. 2018).

    ``lam`` ~ Beta(alpha, alpha) per clip; a share ``p`` of the clips is mixed, the rest stay whole.
    """

    def __init__(self, alpha: float = 0.4, p: float = 1.0) -> None:
        super().__init__()
        if alpha <= 0 or not 0.0 <= p <= 1.0:
            raise UserError(f"augment.mixup: alpha={alpha} must be positive and p={p} between 0 and 1")
        self.alpha, self.p = alpha, p

    def forward(
        self, audio: torch.Tensor, targets: torch.Tensor, rand: Random
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixed ``audio`` and ``targets`` (probabilities), and the ``lam`` and ``partner`` of each clip."""
        n = len(audio)
        lam = rand.beta(self.alpha, n)
        lam = torch.where(rand.uniform(0.0, 1.0, n) < self.p, lam, torch.ones_like(lam))
        partner = rand.permutation(n)
        mixed = lam[:, None, None] * audio + (1 - lam[:, None, None]) * audio[partner]
        return mixed, lam[:, None] * targets + (1 - lam[:, None]) * targets[partner], lam, partner


class SpecAugment(nn.Module):
    """Frequency and time masks on the normalised log-Mel spectrogram (Park et al. 2019), drawn per clip
    and channel as torchaudio's ``iid_masks`` do: width up to ``freq_mask`` bands / ``time_mask`` frames."""

    def __init__(self, freq_mask: int = 8, time_mask: int = 24, num_masks: int = 2) -> None:
        super().__init__()
        if min(freq_mask, time_mask, num_masks) < 0:
            raise UserError(
                f"augment.spectrogram: freq_mask={freq_mask}, time_mask={time_mask} and "
                f"num_masks={num_masks} must not be negative"
            )
        self.freq_mask, self.time_mask, self.num_masks = freq_mask, time_mask, num_masks

    def _mask(self, spec: torch.Tensor, width: int, axis: int, rand: Random) -> torch.Tensor:
        size, (b, c) = spec.shape[axis], spec.shape[:2]
        value = rand.uniform(0.0, 1.0, b * c).reshape(b, c) * min(width, size)
        start = rand.uniform(0.0, 1.0, b * c).reshape(b, c) * (size - value)
        position = torch.arange(size, device=spec.device, dtype=torch.float32)
        masked = (position >= start.floor()[..., None]) & (
            position < (start + value).floor()[..., None]
        )  # (B, C, size)
        masked = masked[:, :, :, None] if axis == 2 else masked[:, :, None, :]
        return spec.masked_fill(masked, 0.0)

    def forward(self, spec: torch.Tensor, rand: Random) -> torch.Tensor:
        """``(batch, channels, n_mels, frames)`` -> the same, masked (0 is each band's mean after normalisation)."""
        for _ in range(self.num_masks):
            spec = self._mask(spec, self.freq_mask, 2, rand)
            spec = self._mask(spec, self.time_mask, 3, rand)
        return spec


class Augment(nn.Module):
    """The training augmentation of one run: waveform transforms in order, mixup, spectrogram transforms.

    Empty (``augment=none``) it changes nothing and only turns labels into one-hot targets. Draws
    follow from ``seed`` (and the DDP rank, so ranks differ), independently of other randomness.
    """

    def __init__(
        self,
        waveform: Mapping[str, Transform] | None = None,
        mixup: Mixup | None = None,
        spectrogram: Mapping[str, nn.Module] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.waveform = nn.ModuleDict(dict(waveform or {}))
        self.mixup = mixup
        self.spectrogram = nn.ModuleDict(dict(spectrogram or {}))
        self.seed = seed
        self._random: Random | None = None

    def random(self, device: torch.device) -> Random:
        """This run's draws on ``device``, made on first use."""
        if self._random is None or self._random.device != device:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank = torch.distributed.get_rank() if distributed else 0
            self._random = Random(np.random.SeedSequence([self.seed, rank]).generate_state(1)[0], device)
        return self._random

    def forward(self, audio: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, channels, samples)`` audio and ``(batch,)`` labels -> augmented audio (fp32) and
        ``(batch, classes)`` target probabilities."""
        rand = self.random(audio.device)
        targets = F.one_hot(labels, classes).float()
        with torch.autocast(device_type=audio.device.type, enabled=False):
            audio = audio.float()
            for transform in self.waveform.values():
                audio = transform(audio, rand)
            if self.mixup is not None:
                audio, targets, _, _ = self.mixup(audio, targets, rand)
        return audio, targets

    def transform_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, n_mels, frames)`` after the front-end -> the same, with SpecAugment and the like."""
        for transform in self.spectrogram.values():
            spec = transform(spec, self.random(spec.device))
        return spec
