"""Training throughput end to end: the study's pipeline against metalcore's, same network, same device.

The study's pipeline is its plain loop: WAV pieces, Mel per clip in the DataLoader's workers,
fp32, the network on the device. metalcore's is ``python -m metalcore.train``'s: the cache, the
DataModule and the LightningModule under a Lightning Trainer, with the variants a device offers
(precision, channels-last, ``compile_cnn``, audio held on the device). Each is timed over a short
first epoch (start-up included: workers, compilation, copying audio to the device) and a steady
epoch; the study's run (216 tracks x 60 clips x 10 epochs) is extrapolated from both.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from metalcore.benchmarks.sources import BATCH
from metalcore.benchmarks.study import StudyClips

STUDY_CLIPS, STUDY_EPOCHS = 216 * 60, 10  # the study's run: 12,960 clips, 10 epochs


@dataclass(frozen=True)
class Throughput:
    """Clips per second of a short first epoch (start-up included) and of a steady epoch."""

    first: float
    steady: float
    clips: int  # per timed epoch

    @property
    def startup(self) -> float:
        """Seconds the first epoch took beyond what the steady rate explains."""
        return max(0.0, self.clips / self.first - self.clips / self.steady)

    def study_run(self) -> float:
        """Seconds for the study's 12,960 clips x 10 epochs at this throughput."""
        return self.startup + STUDY_CLIPS * STUDY_EPOCHS / self.steady


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def study_pipeline(
    net: torch.nn.Module, pieces: list[Path], labels: list[int], device: torch.device, workers: int, batches: int
) -> Throughput:
    """The study's loop over its WAV pieces for ``batches`` steps per epoch, two epochs, fp32."""
    net = net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)  # metalcore's default, so only the pipeline differs
    began = time.perf_counter()
    loader = DataLoader(
        StudyClips(pieces, labels),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    ends, clips = [], []
    for _ in range(2):
        clips.append(0)
        for step, (spec, label) in enumerate(loader):
            if step == batches:
                break
            spec, label = spec.to(device, non_blocking=True), label.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(spec), label).backward()
            optimizer.step()
            clips[-1] += len(label)
        synchronize(device)
        ends.append(time.perf_counter())
    return Throughput(clips[0] / (ends[0] - began), clips[1] / (ends[1] - ends[0]), clips[0])


class _EpochEnds(Callback):
    """When each training epoch ended (the device synchronised first), and how many clips it trained on."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.clips: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.clips.append(0)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.clips[-1] += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        synchronize(module.device)
        self.ends.append(time.perf_counter())


def metalcore_pipeline(build: Callable[[], tuple], accelerator: str, precision: str, batches: int) -> Throughput:
    """``build()`` -> (DataModule, LightningModule) as ``metalcore.train`` builds them; fit two short epochs.

    Validation, checkpoints and logging are off: the clock sees what a training step costs.
    """
    began = time.perf_counter()
    datamodule, module = build()
    clock = _EpochEnds()
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # no banners between the table's rows
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = L.Trainer(
                accelerator=accelerator,
                devices=1,
                precision=precision,
                max_epochs=2,
                limit_train_batches=batches,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[clock],
            )
            trainer.fit(module, datamodule=datamodule)
    finally:
        quiet.setLevel(level)
    (first, steady), (start, end) = clock.clips, clock.ends  # what ran: a short split has fewer batches
    return Throughput(first / (start - began), steady / (end - start), first)


def piece_labels(pieces: dict[int, list[Path]], labels: np.ndarray) -> tuple[list[Path], list[int]]:
    """Every piece of every track with its track's label, flattened."""
    flat = [(p, int(labels[t])) for t, paths in pieces.items() for p in paths]
    return [p for p, _ in flat], [y for _, y in flat]


@dataclass(frozen=True)
class Variant:
    """One way of running metalcore's pipeline: config overrides and the Trainer's precision."""

    label: str
    overrides: tuple[str, ...]
    precision: str
    every_network: bool = False  # also timed with our network, not only the study's


def variants(device: torch.device, default: str) -> list[Variant]:
    """What to time on ``device``: the defaults first (``default`` precision), then one change each."""
    if device.type != "cuda":
        rows = [Variant(f"metalcore, {default}, channels-last (the defaults)", (), default, every_network=True)]
        if default != "32-true":  # bf16 instructions on this CPU: fp32 as well, what other CPUs get
            rows.append(Variant("metalcore, 32-true, channels-last", (), "32-true", every_network=True))
        return [
            *rows,
            Variant("metalcore, 32-true, channels-last off", ("module.channels_last=false",), "32-true"),
            Variant(f"metalcore, {default}, audio in memory", ("data.on_device=true",), default),
        ]
    return [
        Variant(f"metalcore, {default}, audio on GPU (the defaults)", (), default, every_network=True),
        Variant("metalcore, 32-true, audio on GPU", (), "32-true", every_network=True),
        Variant(f"metalcore, {default}, memory-mapped loader", ("data.on_device=false",), default),
        Variant(f"metalcore, {default}, channels-last off", ("module.channels_last=false",), default),
        Variant(f"metalcore, {default}, compile_cnn", ("module.compile_cnn=true",), default),
        Variant(
            f"metalcore, {default}, compile_cnn reduce-overhead (CUDA graphs)",
            ("module.compile_cnn=true", "module.compile_mode=reduce-overhead"),
            default,
        ),
        Variant(
            f"metalcore, {default}, compile_cnn max-autotune",
            ("module.compile_cnn=true", "module.compile_mode=max-autotune-no-cudagraphs"),
            default,
        ),
    ]
