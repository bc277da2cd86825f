"""The Mel front-end: raw audio batches become normalised log-Mel tensors on the accelerator.

It lives inside the LightningModule so that batches cross to the GPU as int16-sized raw audio and
the STFT runs there. The STFT is computed in fp32 with autocast disabled (float16 overflows and
bf16 FFTs are unsupported on CUDA); the network after it may run in mixed precision.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchaudio import transforms as T

from metalcore.core.errors import UserError


class PowerSpectrogram(nn.Module):
    """``(..., samples)`` -> centred STFT power ``(..., n_fft // 2 + 1, frames)`` (Hann window, reflect padding).

    torchaudio's ``Spectrogram(power=2)`` values, taken as re² + im² of the complex STFT instead of
    ``abs() ** 2``: no square root, so faster per clip on a CPU (``python -m metalcore.bench``'s
    front-end table). Its ``window`` buffer keeps
    torchaudio's name, so checkpoints read either way.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        shape = audio.shape
        z = torch.stft(
            audio.reshape(-1, shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        z = torch.view_as_real(z)  # (B * C, freqs, frames, 2): a view, nothing copied
        power = z[..., 0].square() + z[..., 1].square()
        return power.reshape(shape[:-1] + power.shape[-2:])


class MelPower(nn.Module):
    """Power spectrogram -> Mel power; ``spectrogram`` and ``mel_scale`` named as in torchaudio's MelSpectrogram."""

    def __init__(self, spectrogram: nn.Module, mel_scale: nn.Module) -> None:
        super().__init__()
        self.spectrogram, self.mel_scale = spectrogram, mel_scale

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.mel_scale(self.spectrogram(audio))


class Frontend(nn.Module):
    """What training, the checkpoint loader and the exporters need of a front-end.

    Waveforms ``(batch, channels, samples)`` at ``sample_rate`` -> ``(batch, channels, n_mels, frames)``
    with a centred STFT of ``n_fft`` every ``hop_length`` samples. A network trained on another
    model's input (a pretrained backbone) comes with its own subclass, chosen in ``conf/features/``.
    """

    sample_rate: int
    n_mels: int
    n_fft: int
    hop_length: int

    def frames(self, samples: int) -> int:
        """Number of spectrogram frames for a clip of ``samples`` (centred STFT)."""
        return samples // self.hop_length + 1

    def check_segment(self, samples: int) -> None:
        """Refuse segments shorter than one FFT window before any training starts."""
        if samples < self.n_fft:
            raise UserError(
                f"features.n_fft={self.n_fft} is longer than a segment of {samples} samples; "
                f"raise data.segment_seconds or lower features.n_fft"
            )


class MelFrontend(Frontend):
    """Waveforms ``(batch, channels, samples)`` -> ``(batch, channels, n_mels, frames)``.

    The Slaney Mel scale (librosa's default) is linear below 1 kHz, so 128 bands still fit an
    n_fft of 1024 at 44.1 kHz where the HTK scale would leave low bands empty.

    MelSpectrogram -> dB -> per-band standardisation (running statistics, like BatchNorm without
    affine terms, so it is exported with the model). SpecAugment is training augmentation and lives
    with the rest of it in ``metalcore.models.augment`` (the ``augment`` config group).
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        n_mels: int = 64,
        n_fft: int = 1024,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "slaney",
        top_db: float | None = 80.0,
    ) -> None:
        super().__init__()
        hop_length = n_fft // 2 if hop_length is None else hop_length
        if n_mels < 1:
            raise UserError(f"features.n_mels={n_mels} must be at least 1 (64 is usual)")
        if n_fft < 16:
            raise UserError(f"features.n_fft={n_fft} must be 16 samples or more (1024 is usual)")
        if hop_length < 1:
            raise UserError(
                f"features.hop_length={hop_length} must be 1 sample or more (a quarter to half of features.n_fft)"
            )
        with warnings.catch_warnings():  # torchaudio warns of empty filters; the error below says it better
            warnings.simplefilter("ignore", UserWarning)
            mel_scale = T.MelScale(n_mels, sample_rate, f_min, f_max, n_fft // 2 + 1, mel_scale=mel_scale)
        empty = int((mel_scale.fb.sum(0) == 0).sum())
        if empty:
            raise UserError(
                f"features.n_mels={n_mels} is too many for features.n_fft={n_fft} at {sample_rate} Hz: "
                f"{empty} Mel filters would be empty; lower n_mels or raise n_fft"
            )
        self.sample_rate, self.n_mels, self.n_fft, self.hop_length = sample_rate, n_mels, n_fft, hop_length
        self.mel = MelPower(PowerSpectrogram(n_fft, hop_length), mel_scale)
        self.to_db = T.AmplitudeToDB(stype="power", top_db=top_db)
        self.norm = nn.BatchNorm2d(n_mels, affine=False)

    def power_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` -> Mel power ``(batch, channels, n_mels, frames)``.

        On the CPU one clip at a time, as the study's DataLoader workers computed it: a batch's
        complex STFT (62 MB for 16 stereo clips of 5.5 s) falls out of the caches. A traced export
        keeps the batched call and its dynamic batch.
        """
        if audio.device.type != "cpu" or len(audio) < 2 or torch.jit.is_tracing():
            return self.mel(audio)
        return torch.cat([self.mel(clip[None]) for clip in audio])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio``: ``(batch, channels, samples)`` float -> ``(batch, channels, n_mels, frames)``."""
        with torch.autocast(device_type=audio.device.type, enabled=False):
            spec = self.to_db(self.power_mel(audio.float()))  # (B, C, M, F)
            return self.norm(spec.transpose(1, 2)).transpose(1, 2)  # standardise each Mel band
