"""Every perturbation of ``evaluate --perturb`` does to the audio what its name says, measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalcore.core.errors import UserError
from metalcore.evaluation.perturb import PERTURBATIONS, chosen, on_pcm

RATE = 16000


def tones(*freqs: float, seconds: float = 2.0, amplitude: float = 0.2) -> torch.Tensor:
    """Stereo sum of sines (the right channel a little quieter, so mono mixing is visible)."""
    t = torch.arange(int(seconds * RATE)) / RATE
    left = sum(torch.sin(2 * torch.pi * f * t) for f in freqs) * amplitude / len(freqs)
    return torch.stack([left, 0.5 * left + 0.05 * torch.sin(2 * torch.pi * 300 * t)])


def band_power(audio: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(audio[0]).abs() ** 2
    freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def peak_hz(audio: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(audio[0] * torch.hann_window(audio.shape[-1])).abs()
    return float(torch.fft.rfftfreq(audio.shape[-1], 1 / RATE)[spectrum.argmax()])


def rms(audio: torch.Tensor) -> float:
    return float(audio.pow(2).mean().sqrt())


@pytest.mark.parametrize("name, snr", [("noise_20db", 20), ("noise_10db", 10)])
def test_noise_is_added_at_the_stated_snr(name, snr):
    clean = tones(440)
    noisy = PERTURBATIONS[name](clean, RATE)
    measured = 10 * np.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1))
    assert np.allclose(measured, snr, atol=0.2)


def test_lowpass_removes_the_spectrum_above_the_cutoff_and_keeps_what_is_below():
    audio = tones(1000, 6000)
    out = PERTURBATIONS["lowpass_4k"](audio, RATE)
    assert band_power(out, 4500, 8000) < 1e-4 * band_power(audio, 4500, 8000)  # at least 40 dB down
    assert band_power(out, 500, 1500) == pytest.approx(band_power(audio, 500, 1500), rel=0.05)


@pytest.mark.parametrize("name, factor", [("gain_-12db", 10 ** (-12 / 20)), ("gain_+12db", 10 ** (12 / 20))])
def test_gain_scales_the_level(name, factor):
    audio = tones(440)
    assert rms(PERTURBATIONS[name](audio, RATE)) == pytest.approx(factor * rms(audio), rel=0.01)


def test_gain_clips_at_full_scale():
    loud = PERTURBATIONS["gain_+12db"](tones(440, amplitude=0.9), RATE)
    assert float(loud.abs().max()) == 1.0


@pytest.mark.parametrize("name, ratio", [("pitch_+1", 2 ** (1 / 12)), ("pitch_-1", 2 ** (-1 / 12))])
def test_pitch_shift_moves_a_tone_by_a_semitone_and_keeps_the_length(name, ratio):
    audio = tones(440)
    out = PERTURBATIONS[name](audio, RATE)
    assert out.shape == audio.shape
    assert peak_hz(out) == pytest.approx(440 * ratio, abs=2.0)  # a semitone is 25 Hz here


@pytest.mark.parametrize("name, rate", [("stretch_0.9", 0.9), ("stretch_1.1", 1.1)])
def test_time_stretch_changes_the_duration_not_the_pitch(name, rate):
    audio = tones(440)
    out = PERTURBATIONS[name](audio, RATE)
    assert out.shape[-1] == round(audio.shape[-1] / rate)
    assert peak_hz(out) == pytest.approx(440, abs=2.0)


def test_mono_mixes_both_channels_into_each():
    audio = tones(440)
    out = PERTURBATIONS["mono"](audio, RATE)
    assert torch.equal(out[0], out[1])
    assert torch.allclose(out[0], audio.mean(0))


def test_mp3_at_64k_loses_the_top_of_the_spectrum_but_keeps_the_rest():
    rate = 44100
    audio = 0.1 * torch.randn(2, 2 * rate, generator=torch.Generator().manual_seed(0))
    out = PERTURBATIONS["mp3_64k"](audio, rate)
    assert out.shape[0] == 2 and abs(out.shape[-1] - audio.shape[-1]) < 0.1 * rate

    def power(x, low, high):
        spectrum = torch.fft.rfft(x[0]).abs() ** 2
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / rate)
        return float(spectrum[(freqs >= low) & (freqs < high)].sum())

    assert power(out, 12000, 20000) < 1e-3 * power(audio, 12000, 20000)  # LAME low-passes at 64 kbps
    assert power(out, 100, 4000) == pytest.approx(power(audio, 100, 4000), rel=0.2)


def test_transforms_work_on_the_int16_pcm_inference_decodes():
    pcm = (tones(440).T.numpy() * 32768).astype(np.int16)
    out = on_pcm(PERTURBATIONS["gain_-12db"], RATE)(pcm)
    assert out.dtype == np.int16 and out.shape == pcm.shape
    assert np.abs(out).max() == pytest.approx(np.abs(pcm).max() * 10 ** (-12 / 20), rel=0.01)


def test_perturbations_are_chosen_by_name():
    assert chosen("all") == list(PERTURBATIONS)
    assert chosen("mono, gain_-12db") == ["mono", "gain_-12db"]
    with pytest.raises(UserError, match="reverb"):
        chosen("mono,reverb")


@pytest.mark.parametrize("samples", [1, 500, 1023])
@pytest.mark.parametrize("name", ["pitch_+1", "stretch_0.9", "stretch_1.1"])
def test_the_stft_perturbations_take_a_track_shorter_than_their_window(name, samples):
    """A track under 1024 samples stopped ``evaluate --perturb`` after the clean scores, losing them."""
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.1, 0.1, (2, samples)).astype(np.float32))
    out = PERTURBATIONS[name](audio, 16000)
    rate = float(name.split("_")[1]) if name.startswith("stretch") else 1.0
    assert out.shape == (2, round(samples / rate)) and torch.isfinite(out).all()
