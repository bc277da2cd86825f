"""Training augmentation: what each transform does to the audio, its seeding, and that only training sees it."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import train_config

from metalcore.audio.pcm import to_float
from metalcore.core.errors import UserError
from metalcore.inference.checkpoint import Classifier
from metalcore.models.augment import (
    AddNoise,
    Augment,
    BandLimit,
    Mixup,
    PitchShift,
    Random,
    RandomEQ,
    RandomGain,
    SpecAugment,
    TimeStretch,
    Transform,
)
from metalcore.models.crnn import CRNN
from metalcore.models.frontend import MelFrontend
from metalcore.training.config import make
from metalcore.training.experiment import build
from metalcore.training.module import GenreClassifier

SR = 16000


def rand(seed: int = 0) -> Random:
    return Random(seed, torch.device("cpu"))


def tone(hz: float, seconds: float = 2.0, batch: int = 1, start: float = 0.0) -> torch.Tensor:
    """A stereo sine ``(batch, 2, samples)`` at ``hz``, silent before ``start`` seconds."""
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    wave = (0.5 * torch.sin(2 * math.pi * hz * t) * (t >= start)).float()
    return wave.expand(batch, 2, -1).clone()


def peak_hz(audio: torch.Tensor) -> float:
    """The strongest frequency of a clip's first channel, refined between FFT bins (zero-padded x8)."""
    x = audio[0, 0].double() * torch.hann_window(audio.shape[-1], dtype=torch.float64)
    spectrum = torch.fft.rfft(x, n=8 * len(x)).abs()
    k = int(spectrum[1:-1].argmax()) + 1
    a, b, c = (float(v) for v in torch.log(spectrum[k - 1 : k + 2]))
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (8 * len(x))


def db(ratio: torch.Tensor | float) -> float:
    return float(10 * torch.log10(torch.as_tensor(ratio, dtype=torch.float64)))


def power(x: torch.Tensor) -> torch.Tensor:
    return x.double().pow(2).mean(dim=(-1, -2))


def test_gain_changes_the_level_by_the_drawn_decibels():
    audio = torch.randn(8, 2, SR) * 0.1
    out = RandomGain(min_db=-6.0, max_db=-6.0)(audio, rand())
    ratios = power(out) / power(audio)
    assert torch.allclose(10 * torch.log10(ratios), torch.full((8,), -6.0, dtype=torch.float64), atol=1e-3)
    spread = 10 * torch.log10(power(RandomGain(-6.0, 6.0)(audio, rand())) / power(audio))
    assert spread.min() >= -6.0 - 1e-3 and spread.max() <= 6.0 + 1e-3 and spread.std() > 1.0  # a gain per clip


@pytest.mark.parametrize("cents", [-80.0, 50.0])
def test_pitch_shift_moves_a_tone_by_the_cents_and_keeps_its_length(cents: float):
    audio = tone(440.0)
    out = PitchShift(min_cents=cents, max_cents=cents, p=1.0)(audio, rand())
    assert out.shape == audio.shape
    moved = 1200 * math.log2(peak_hz(out) / peak_hz(audio))
    assert moved == pytest.approx(cents, abs=6.0)  # the ratio is quantised to steps of about 9 cents


def test_time_stretch_changes_the_tempo_not_the_pitch():
    audio = tone(440.0, start=1.0)  # silence, then a tone from 1 s on
    out = TimeStretch(min_rate=1.25, max_rate=1.25, p=1.0)(audio, rand())
    assert out.shape == audio.shape
    envelope = out[0, 0].abs().unfold(0, 160, 160).mean(-1)  # 10 ms frames
    onset = int(torch.nonzero(envelope > 0.5 * envelope.max())[0]) * 0.01
    assert onset == pytest.approx(1.0 / 1.25, abs=0.04)
    assert 1200 * math.log2(peak_hz(out[..., 13000:]) / 440.0) == pytest.approx(0.0, abs=5.0)


def test_band_limit_leaves_nothing_above_the_cutoff():
    audio = torch.randn(4, 2, SR) * 0.1
    out = BandLimit(SR, min_hz=3000.0, max_hz=3000.0)(audio, rand())
    spectrum = torch.fft.rfft(out.double(), dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    above, below = spectrum[..., freqs > 3000].sum(), spectrum[..., freqs <= 3000].sum()
    assert db(above / below) < -100.0
    original = torch.fft.rfft(audio.double(), dim=-1).abs() ** 2
    assert db(below / original[..., freqs <= 3000].sum()) == pytest.approx(0.0, abs=0.01)


def test_eq_tilts_the_spectrum_by_decibels_per_octave():
    low, mid, high = (tone(hz, seconds=1.0) for hz in (250.0, 1000.0, 4000.0))
    audio = (low + mid + high) / 3
    out = RandomEQ(SR, max_tilt_db=3.0, max_peak_db=0.0)(audio.expand(6, 2, -1).clone(), rand())

    def level(x: torch.Tensor, hz: float) -> torch.Tensor:
        return torch.fft.rfft(x.double(), dim=-1).abs()[:, 0, round(hz)]  # 1 s clips: bin = Hz

    change = {hz: 20 * torch.log10(level(out, hz) / level(audio, hz)) for hz in (250.0, 1000.0, 4000.0)}
    tilt = change[4000.0] / 2  # two octaves above the 1 kHz pivot
    assert torch.allclose(change[1000.0], torch.zeros(6, dtype=torch.float64), atol=0.01)
    assert torch.allclose(change[250.0], -change[4000.0], atol=0.01)
    assert tilt.abs().max() <= 3.0 + 1e-6 and tilt.std() > 0.3  # each clip its own tilt, within the range


def test_added_noise_has_the_drawn_signal_to_noise_ratio():
    audio = torch.randn(8, 2, SR) * 0.1
    out = AddNoise(min_snr_db=20.0, max_snr_db=20.0)(audio, rand())
    snr = 10 * torch.log10(power(audio) / power(out - audio))
    assert torch.allclose(snr, torch.full((8,), 20.0, dtype=torch.float64), atol=0.05)


def test_mixup_blends_clips_and_their_labels_alike():
    audio = torch.arange(1, 9, dtype=torch.float32)[:, None, None].expand(8, 2, 100).clone()  # clip i is i + 1
    targets = torch.nn.functional.one_hot(torch.tensor([0, 1] * 4), 2).float()
    mixed, soft, lam, partner = Mixup(alpha=0.4, p=1.0)(audio, targets, rand())
    assert torch.allclose(mixed[:, 0, 0], lam * audio[:, 0, 0] + (1 - lam) * audio[partner, 0, 0])
    assert torch.allclose(soft, lam[:, None] * targets + (1 - lam[:, None]) * targets[partner])
    assert torch.allclose(soft.sum(1), torch.ones(8))
    assert ((lam > 0.01) & (lam < 0.99)).any() and not torch.equal(partner, torch.arange(8))
    # through Augment: labels become targets that sum to one, soft where clips of two classes were blended
    out, soft = Augment(mixup=Mixup(alpha=0.4))(audio, torch.tensor([0, 1] * 4), 2)
    assert not torch.equal(out, audio) and torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft.max(1).values < 0.99).any()


def test_the_training_loss_scores_mixups_blended_targets():
    """A training step's loss is the cross-entropy of the mixed clips against their blended labels
    (the same seed draws the same mixing here), not against each clip's own label."""
    torch.manual_seed(0)
    frontend = MelFrontend(SR, n_mels=32, n_fft=512, hop_length=256)
    net = CRNN(2, 2, 32, channels=(8, 16), gru_hidden=8)
    mixup = Augment(mixup=Mixup(alpha=0.4), seed=3)
    module = GenreClassifier(frontend, net, ["a", "b"], optimizer=torch.optim.Adam, augment=mixup).eval()  # no dropout
    audio = 0.1 * torch.randn(6, 2, SR // 2, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    with warnings.catch_warnings():  # self.log outside a Trainer
        warnings.simplefilter("ignore")
        loss = module.training_step((audio, labels, torch.arange(6)), 0)
    mixed, soft = Augment(mixup=Mixup(alpha=0.4), seed=3)(audio, labels, 2)
    assert (soft.max(1).values < 0.9).any()  # some clips were blended with one of the other class
    with torch.no_grad():
        logits = module(mixed)
    loss = float(loss.detach())
    assert loss == pytest.approx(float(F.cross_entropy(logits, soft)), abs=1e-6)
    assert loss != pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-3)


def test_spec_augment_masks_bands_and_frames_per_clip():
    spec = torch.ones(4, 2, 64, 100)
    out = SpecAugment(freq_mask=8, time_mask=20, num_masks=1)(spec, rand())
    masked = out == 0
    bands = masked.all(dim=3).sum(dim=2)  # fully masked bands, per clip and channel
    frames = masked.all(dim=2).sum(dim=2)
    assert bands.max() <= 8 and frames.max() <= 20 and bands.sum() > 0 and frames.sum() > 0
    assert len({tuple(m.flatten().tolist()) for m in masked.all(dim=3).flatten(0, 1)}) > 1  # iid per clip/channel
    assert torch.equal(SpecAugment(num_masks=0)(spec, rand()), spec)


def test_p_chooses_the_share_of_clips_touched():
    audio = torch.randn(200, 1, 64)
    changed = (RandomGain(6.0, 6.0, p=0.3)(audio, rand()) != audio).any(dim=(1, 2)).float().mean()
    assert 0.2 < changed < 0.4
    assert torch.equal(RandomGain(6.0, 6.0, p=0.0)(audio, rand()), audio)


def strong(seed: int) -> Augment:
    cfg = train_config("augment=strong", "data.sample_rate=16000", f"seed={seed}")
    return make(cfg.augment)


def test_the_seed_fixes_the_draws_and_augment_holds_no_weights():
    audio, labels = torch.randn(8, 2, SR) * 0.1, torch.tensor([0, 1] * 4)
    first, again, other = strong(3), strong(3), strong(4)
    a, b = first(audio, labels, 2), again(audio, labels, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(other(audio, labels, 2)[0], a[0])
    assert not torch.equal(first(audio, labels, 2)[0], a[0])  # the next batch draws anew
    assert first.state_dict() == {} and not list(first.parameters())


@pytest.mark.parametrize(
    "name, waveform, spectrogram",
    [
        ("none", [], []),
        ("light", ["gain"], ["specaugment"]),
        ("strong", ["gain", "eq", "pitch", "stretch", "noise", "band_limit"], ["specaugment"]),
    ],
)
def test_augment_configs_build_their_transforms(name: str, waveform: list, spectrogram: list):
    cfg = train_config(f"augment={name}")
    augment = make(cfg.augment)
    assert list(augment.waveform) == waveform and list(augment.spectrogram) == spectrogram
    assert (augment.mixup is not None) == (name == "strong")
    assert all(isinstance(t, Transform) for t in augment.waveform.values())


def test_impossible_ranges_are_one_clear_error():
    with pytest.raises(UserError, match=r"gain range \[6.0, -6.0\]"):
        RandomGain(6.0, -6.0)
    with pytest.raises(UserError, match="p=2"):
        AddNoise(p=2)


class Spy(Transform):
    """Counts the clips it is given; changes nothing."""

    def __init__(self) -> None:
        super().__init__(p=1.0)
        self.clips = 0

    def apply(self, audio: torch.Tensor, rand: Random) -> torch.Tensor:
        self.clips += len(audio)
        return audio


def test_only_training_augments_never_evaluation_or_prediction(cache_dir: Path, demo_root: Path, tmp_path: Path):
    from conftest import tiny_overrides

    cfg = train_config(*tiny_overrides(cache_dir, "~logger", f"paths.output_dir={tmp_path}"), "augment=strong")
    datamodule, module = build(cfg)
    spy = Spy()
    module.augment.waveform["spy"] = spy
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=datamodule)
    trained = spy.clips
    assert trained == 2 * cfg.data.batch_size  # every training clip passes through the augmentation
    trainer.validate(module, datamodule=datamodule, verbose=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    assert spy.clips == trained  # validation and test: not one clip more
    module.eval()  # held-out clips are scored by the model in evaluation mode: no masks, dropout or batch statistics
    for stage, loader in (("val", datamodule.val_dataloader()), ("test", datamodule.test_dataloader())):
        with torch.no_grad():
            expected = torch.cat([module(to_float(audio)).softmax(-1) for audio, _, _ in loader])
        np.testing.assert_allclose(module.held_out[stage][0], expected.double().numpy(), atol=1e-5, err_msg=stage)

    trainer.save_checkpoint(tmp_path / "model.ckpt")
    # a checkpoint from before SpecAugment moved out of the front-end (its settings in features) still loads
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["spec"]["features"].update(freq_mask=8, time_mask=24, num_masks=2)
    torch.save(checkpoint, tmp_path / "model.ckpt")
    classifier = Classifier.from_checkpoint(tmp_path / "model.ckpt", device="cpu")
    assert not any(isinstance(m, (Augment, Transform, SpecAugment)) for m in classifier.modules())
    clip = torch.randn(2, 2, datamodule.segment_samples) * 0.1
    assert torch.equal(classifier(clip), classifier(clip))  # prediction is deterministic: nothing random left
    with torch.no_grad():  # the trained module in evaluation mode scores exactly like the classifier
        np.testing.assert_allclose(classifier(clip).numpy(), module.eval()(clip).softmax(-1).numpy(), atol=1e-5)
