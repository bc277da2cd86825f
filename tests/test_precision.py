"""Mixed precision without a GPU: a bf16-mixed training step on the CPU, as CUDA (and CPUs with bf16
instructions) run it by default.

What must hold under autocast: the Mel front-end (STFT) computes and returns float32, the CNN runs
in bfloat16, the GRU reads float32 (it runs outside autocast), and the step updates the weights
with a finite loss.
"""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metalcore.models.crnn import CRNN
from metalcore.models.frontend import MelFrontend
from metalcore.training.config import best_precision
from metalcore.training.module import GenreClassifier

SR = 16000


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_a_bf16_mixed_cpu_training_step_keeps_the_front_end_and_gru_in_fp32():
    torch.manual_seed(0)
    frontend = MelFrontend(sample_rate=SR, n_mels=32, n_fft=512, hop_length=256)
    net = CRNN(num_classes=2, in_channels=2, n_mels=32, channels=(8, 16), gru_hidden=16, gru_layers=1)
    module = GenreClassifier(
        frontend, net, ["hardcore", "metal"], optimizer=functools.partial(torch.optim.AdamW, lr=1e-3)
    )
    seen: dict[str, torch.dtype] = {}

    def record(name: str, tensor: torch.Tensor) -> None:  # a hook returning None changes nothing
        seen.setdefault(name, tensor.dtype)

    frontend.register_forward_hook(lambda m, args, out: record("frontend", out))
    net.cnn[0].register_forward_hook(lambda m, args, out: record("conv", out))
    net.gru.register_forward_pre_hook(lambda m, args: record("gru_input", args[0]))
    before = net.head[-1].weight.detach().clone()

    audio = 0.3 * torch.randn(8, 2, SR)
    loader = DataLoader(TensorDataset(audio, torch.arange(8) % 2, torch.arange(8)), batch_size=8)
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)

    assert seen == {"frontend": torch.float32, "conv": torch.bfloat16, "gru_input": torch.float32}
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert not torch.equal(before, net.head[-1].weight.detach())
    assert net.head[-1].weight.dtype == torch.float32  # master weights stay fp32


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_convolutions_read_a_channels_last_map():
    """module.channels_last (the default): the CNN's weights and input are channels-last, the step trains."""
    torch.manual_seed(0)
    frontend = MelFrontend(sample_rate=SR, n_mels=32, n_fft=512, hop_length=256)
    net = CRNN(num_classes=2, in_channels=2, n_mels=32, channels=(8, 16), gru_hidden=16, gru_layers=1)
    module = GenreClassifier(frontend, net, ["a", "b"], optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    seen: dict[str, torch.Tensor] = {}
    net.cnn[0].register_forward_pre_hook(lambda m, args: seen.setdefault("conv", args[0]))
    before = net.head[-1].weight.detach().clone()

    audio = 0.3 * torch.randn(4, 2, SR)
    loader = DataLoader(TensorDataset(audio, torch.arange(4) % 2, torch.arange(4)), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=loader)

    assert not torch.equal(before, net.head[-1].weight.detach())
    assert seen["conv"].is_contiguous(memory_format=torch.channels_last)
    assert net.cnn[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "cuda, cuda_bf16, cpu_probes, expected",
    [
        (True, True, (False, False), "bf16-mixed"),
        (True, False, (True, True), "16-mixed"),
        (False, False, (True, False), "bf16-mixed"),  # AVX512-BF16
        (False, False, (False, True), "bf16-mixed"),  # AMX
        (False, False, (False, False), "32-true"),
    ],
)
def test_the_default_precision_is_bf16_where_the_hardware_runs_it(monkeypatch, cuda, cuda_bf16, cpu_probes, expected):
    """trainer.precision's default: bf16-mixed on CUDA and on CPUs with bf16 instructions, fp32 on other CPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda_bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_probes[0])
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: cpu_probes[1])
    assert best_precision() == expected
