"""features.py and models/: shapes over the settings users sweep, the study's network, the configs.

Everything runs in-process on short random clips; the Hydra configs are composed exactly as
``python -m metalcore.train`` composes them, so a config that no longer builds fails here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import hydra
import pytest
import torch
from conftest import train_config
from torchaudio import transforms as T

from metalcore.core.errors import UserError
from metalcore.models.base import check_network
from metalcore.models.cnn import CNN
from metalcore.models.crnn import CRNN
from metalcore.models.frontend import MelFrontend
from metalcore.models.stats import MelStats
from metalcore.training.module import GenreClassifier

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SR = 16000


def compose_train(*overrides: str, tmp_path: Path):
    """``conf/train.yaml`` with ``overrides``, outputs and cache pointed at ``tmp_path``."""
    return train_config(*overrides, f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}")


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- the Mel front-end ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_mels, n_fft, hop, samples",
    [
        (32, 512, 256, 8000),
        (64, 1024, 512, 16000),
        (128, 2048, 512, 12345),
        (64, 1024, None, 4000),
        (40, 512, 128, 512),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_frontend_shape(n_mels, n_fft, hop, samples, channels):
    frontend = MelFrontend(sample_rate=SR, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
    spec = frontend.eval()(torch.randn(3, channels, samples))
    frames = samples // (hop or n_fft // 2) + 1
    assert spec.shape == (3, channels, n_mels, frames) == (3, channels, n_mels, frontend.frames(samples))
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()


def test_frontend_is_deterministic_in_training_and_evaluation():
    """No randomness in the front-end: SpecAugment lives with the training augmentation (test_augment.py)."""
    audio = torch.randn(4, 2, SR)
    frontend = MelFrontend(sample_rate=SR, n_mels=64, n_fft=512, hop_length=256)
    frontend.train()(audio)  # running statistics move away from their initial values
    frontend.eval()
    assert torch.equal(frontend(audio), frontend(audio))
    frontend.train()
    assert torch.equal(frontend(audio), frontend(audio))


def test_cpu_front_end_computes_what_torchaudios_mel_spectrogram_computes():
    """On the CPU the Mel power is taken one clip at a time, as re² + im² (faster there); the values, the
    state dict names (old checkpoints) and the batched call must all be torchaudio's."""
    torch.manual_seed(0)
    frontend = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256)
    reference = T.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=32, mel_scale="slaney")
    audio = 0.3 * torch.randn(5, 2, 16000)
    expected = reference(audio)
    assert torch.allclose(frontend.power_mel(audio), expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(frontend.mel(audio), expected, rtol=1e-4, atol=1e-6)
    assert set(frontend.mel.state_dict()) == set(reference.state_dict())


def test_the_front_end_takes_the_mel_power_in_decibels_with_an_80_db_floor():
    """10·log10 of the Mel power (a power, not an amplitude), floored 80 dB below each clip's peak:
    ``AmplitudeToDB("power", top_db=80)`` over ``MelSpectrogram``. A fresh front-end in evaluation
    mode standardises with mean 0 and variance 1, so its output is those decibels / sqrt(1 + eps)."""
    t = torch.arange(16000) / 16000
    loud = 0.5 * torch.sin(2 * torch.pi * 440 * t) * (t < 0.5)  # a tone, then silence: the floor bites
    audio = torch.stack([loud, 0.1 * loud]).expand(3, 2, 16000) * torch.tensor([1.0, 0.01, 3.0])[:, None, None]
    audio = audio + 1e-6 * torch.randn(3, 2, 16000, generator=torch.Generator().manual_seed(0))
    mel = T.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=32, mel_scale="slaney")
    decibels = T.AmplitudeToDB("power", top_db=80)(mel(audio))
    floor = decibels.amax((1, 2, 3), keepdim=True) - 80
    assert ((decibels == floor).float().mean((1, 2, 3)) > 0.1).all()  # every clip has frames on its floor
    frontend = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256).eval()
    with torch.no_grad():
        spec = frontend(audio)
    assert torch.allclose(spec, decibels / (1 + frontend.norm.eps) ** 0.5, atol=2e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stft_runs_in_fp32_under_autocast(dtype):
    frontend = MelFrontend(sample_rate=SR, n_mels=64, n_fft=512, hop_length=256).eval()
    audio = 0.5 * torch.randn(2, 2, SR)
    with torch.autocast("cpu", dtype=dtype):
        spec = frontend(audio.to(dtype))
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()
    assert torch.allclose(spec, frontend(audio.to(dtype).float()))


@pytest.mark.parametrize("n_mels, n_fft, sample_rate", [(256, 512, 16000), (256, 1024, 44100), (64, 128, 22050)])
def test_too_many_mel_bins_for_the_fft_is_one_clear_error(n_mels, n_fft, sample_rate):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our message, not torchaudio's warning, is what the user reads
        with pytest.raises(UserError, match=rf"features\.n_mels={n_mels} is too many for features\.n_fft={n_fft}"):
            MelFrontend(sample_rate=sample_rate, n_mels=n_mels, n_fft=n_fft)


def test_check_segment_refuses_an_fft_longer_than_a_segment():
    frontend = MelFrontend(sample_rate=SR, n_mels=32, n_fft=1024)
    frontend.check_segment(1024)
    with pytest.raises(UserError, match=r"features\.n_fft=1024 is longer than a segment of 1023 samples"):
        frontend.check_segment(1023)


@pytest.mark.parametrize(
    "kw, key", [({"n_fft": 8}, "features.n_fft=8"), ({"hop_length": -1}, "features.hop_length=-1")]
)
def test_frontend_refuses_other_impossible_settings(kw, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        MelFrontend(sample_rate=SR, **{"n_mels": 64, "n_fft": 1024, **kw})


# -- networks -------------------------------------------------------------------------------------


def spectrogram(batch: int, channels: int, n_mels: int, frames: int) -> torch.Tensor:
    return torch.randn(batch, channels, n_mels, frames, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("n_mels", [32, 64, 96, 128])
@pytest.mark.parametrize("frames", [8, 63, 200])
@pytest.mark.parametrize("gru_hidden, gru_layers", [(16, 1), (64, 2)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_crnn_shape(n_mels, frames, gru_hidden, gru_layers, bidirectional):
    net = CRNN(
        num_classes=3,
        in_channels=2,
        n_mels=n_mels,
        channels=(8, 16, 16),
        gru_hidden=gru_hidden,
        gru_layers=gru_layers,
        bidirectional=bidirectional,
    ).eval()
    assert net.gru.hidden_size == gru_hidden and net.gru.num_layers == gru_layers
    assert net.gru.bidirectional == bidirectional and net.gru.input_size == 16 * (n_mels // 8)
    logits = net(spectrogram(2, 2, n_mels, frames))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
@pytest.mark.parametrize("fc_hidden", [0, 24])
@pytest.mark.parametrize("in_channels", [1, 2])
def test_crnn_pooling_head_and_channels(pooling, fc_hidden, in_channels):
    net = CRNN(
        num_classes=2,
        in_channels=in_channels,
        n_mels=64,
        channels=(8, 16),
        gru_hidden=16,
        pooling=pooling,
        fc_hidden=fc_hidden,
    ).eval()
    assert net(spectrogram(3, in_channels, 64, 40)).shape == (3, 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, c: CNN(num_classes=c, n_mels=m, channels=(8, 16, 32)),
        lambda m, c: MelStats(num_classes=c, n_mels=m),
        lambda m, c: MelStats(num_classes=c, n_mels=m, hidden=16, dropout=0.1),
    ],
    ids=["cnn", "stats", "stats-mlp"],
)
@pytest.mark.parametrize("n_mels", [32, 64, 128])
@pytest.mark.parametrize("frames", [8, 101])
def test_baseline_shapes(make, n_mels, frames):
    net = make(n_mels, 4).eval()
    assert net(spectrogram(2, 2, n_mels, frames)).shape == (2, 4)


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"pooling": "attention"}, "model.pooling='attention'"),
        ({"gru_hidden": 0}, "model.gru_hidden=0"),
        ({"n_mels": 4}, "features.n_mels=4 is too few for 3 pooling blocks"),
    ],
)
def test_crnn_refuses_impossible_settings(kw, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.").replace("(", r"\(")):
        CRNN(num_classes=2, **{"n_mels": 64, **kw})


def test_gru_reads_time_steps_in_order():
    """Only late frames differ between two inputs: the GRU's early steps must not see the difference.

    Reshaping the conv output with ``view`` (the study's bug) spreads every frame over all steps.
    """
    net = CRNN(num_classes=2, n_mels=64, gru_hidden=16).eval()
    seen = []
    net.gru.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    quiet = torch.zeros(1, 2, 64, 128)
    loud_end = quiet.clone()
    loud_end[..., 96:] = torch.randn(1, 2, 64, 32)
    with torch.no_grad():
        net(quiet), net(loud_end)
    before, after = seen
    assert before.shape == (1, 128 // 8, 128 * (64 // 8))  # (batch, time, channels x freq)
    # the conv stack's receptive field reaches back fewer than 16 frames (2 steps) from frame 96
    assert torch.equal(before[:, :10], after[:, :10])
    assert not torch.equal(before[:, 12:], after[:, 12:])


def gru_by_hand(gru: torch.nn.GRU, x: torch.Tensor, suffix: str) -> torch.Tensor:
    """One layer, one direction, from the GRU equations: ``(batch, time, input)`` -> ``(batch, time, hidden)``."""
    w_ih, w_hh = getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"weight_hh_l0{suffix}")
    b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
    h, outputs = torch.zeros(x.shape[0], gru.hidden_size), []
    for t in range(x.shape[1]):
        (i_r, i_z, i_n), (h_r, h_z, h_n) = (x[:, t] @ w_ih.T + b_ih).chunk(3, 1), (h @ w_hh.T + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        outputs.append(h)
    return torch.stack(outputs, 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_step_pooling_reads_each_direction_after_the_whole_clip(bidirectional):
    """pooling=last: the forward GRU at the last frame; the backward GRU at the first frame, where it has
    read the whole clip (its last frame would be one step of input)."""
    net = CRNN(num_classes=2, n_mels=32, channels=(8, 8), gru_hidden=6, gru_layers=1, bidirectional=bidirectional)
    net.pooling = "last"
    seen = {}
    net.gru.register_forward_hook(lambda module, args, output: seen.update(gru_in=args[0].detach()))
    net.head.register_forward_pre_hook(lambda module, args: seen.update(pooled=args[0].detach()))
    with torch.no_grad():
        net.eval()(spectrogram(3, 2, 32, 40))
        x = seen["gru_in"]  # (B, T, features)
        expected = gru_by_hand(net.gru, x, "")[:, -1]
        if bidirectional:
            backward = gru_by_hand(net.gru, x.flip(1), "_reverse").flip(1)  # (B, T, H) in clip order
            expected = torch.cat([expected, backward[:, 0]], 1)
    assert seen["pooled"].shape == (3, 6 * (2 if bidirectional else 1))
    assert torch.allclose(seen["pooled"], expected, atol=1e-5)


def test_study_model_has_the_studys_parameter_count(tmp_path):
    cfg = compose_train("model=study", tmp_path=tmp_path)
    net = hydra.utils.instantiate(cfg.model, num_classes=2)
    assert isinstance(net, CRNN) and not net.gru.bidirectional and net.pooling == "last"
    assert parameters(net) == 381_090


# -- every shipped config builds and fits together ------------------------------------------------

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


# (each value an experiment sweeps is checked in test_sweeps.py)
CONFIGS = [[f"experiment={name}"] for name in EXPERIMENTS] + [[f"model={name}"] for name in MODELS]


@pytest.mark.parametrize("overrides", [*CONFIGS, ["data=synthetic"]], ids=" ".join)
def test_config_composes_and_instantiates(overrides, tmp_path):
    assert EXPERIMENTS, "conf/experiment/ holds no experiment"
    cfg = compose_train(*overrides, tmp_path=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    frontend = hydra.utils.instantiate(cfg.features)
    net = hydra.utils.instantiate(cfg.model, num_classes=2)
    frontend.check_segment(datamodule.segment_samples)
    assert frontend.sample_rate == datamodule.sample_rate
    # one second is enough to show that front-end and network agree on shapes (segment length only
    # changes the number of frames, which check_segment and train.build cover); whole segments cost seconds
    samples = min(datamodule.segment_samples, datamodule.sample_rate)
    check_network(net, 2, datamodule.channels, frontend.n_mels, frontend.frames(samples))


def test_compile_cnn_compiles_only_the_conv_stack_and_keeps_checkpoint_names():
    """module.compile_cnn=true: what the network names (its conv stack) runs through torch.compile;
    the GRU and front-end stay eager."""
    net = CRNN(2, gru_hidden=16)
    names = list(net.state_dict())
    module = GenreClassifier(
        MelFrontend(16000, n_fft=512), net, ["a", "b"], optimizer=torch.optim.Adam, compile_cnn=True
    )
    module.configure_model()
    assert module.net.cnn._compiled_call_impl is not None
    assert module.net.gru._compiled_call_impl is None and module.frontend._compiled_call_impl is None
    assert list(module.net.state_dict()) == names


def test_one_track_pools_into_one_row():
    """A held-out batch can hold clips of a single track (60 segments per track, batches of 16)."""
    from metalcore.scoring.metrics import classification_metrics
    from metalcore.scoring.pooling_metric import TrackPooling, pooled_tracks

    pooling = TrackPooling()
    pooling.update(
        torch.tensor([[0.8, 0.2]] * 16), torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long)
    )
    probs, labels = pooled_tracks(pooling)
    assert probs.shape == (1, 2) and labels.shape == (1,)
    assert torch.allclose(probs, torch.tensor([[0.8, 0.2]]))
    assert float(classification_metrics(2)(probs, labels)["acc"]) == 1.0
