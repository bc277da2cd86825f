"""What a run costs: seconds per epoch (training and validation), clips per second, wall time of fit and
test, and peak memory, measured by a callback so that metrics.json can compare configurations by cost.

Every number is rank 0's own clock and counters: nothing here talks to the other ranks (a collective
issued by one rank only deadlocks DDP). Clips per second scale rank 0's count by the world size,
which holds because every training rank gets the same number of batches (``data.segments.Shard``).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn


@dataclass(frozen=True)
class EpochTime:
    """One finished training epoch: ``train_s`` excludes the validation that ran inside it."""

    epoch: int  # 0-based, as Lightning counts
    train_s: float
    val_s: float
    clips: int  # training clips over all ranks
    resumed: bool = False  # begun before a stop: only its part after the resume was timed

    @property
    def seconds(self) -> float:
        return self.train_s + self.val_s

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.train_s if self.train_s > 0 else float("nan")


def host_peak_mib() -> float:
    """This process's peak resident memory so far: since it started, so over every job a sweep ran in it
    (the kernel keeps no per-run peak); decoding and loader workers are separate processes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class Timings(Callback):
    """Clocks the phases of a run; ``summary()`` is what metrics.json records under ``timing``."""

    def __init__(self) -> None:
        self.epochs: list[EpochTime] = []
        self.fit_s = self.test_s = float("nan")
        self._started: float | None = None  # first setup: the trainer's whole span, fit to test
        self._ended: float | None = None
        self._phase: dict[str, float] = {}  # phase name -> start time of the one running now
        self._val_s = 0.0
        self._clips = 0
        self._resumed = False
        self._cuda: torch.device | None = None

    def _start(self, phase: str) -> None:
        self._phase[phase] = time.perf_counter()

    def _stop(self, phase: str) -> float:
        self._ended = time.perf_counter()
        return self._ended - self._phase.pop(phase, self._ended)

    # -- the run -----------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._started is None:
            self._started = time.perf_counter()
        device = trainer.strategy.root_device
        if device.type == "cuda" and self._cuda is None:
            self._cuda = device
            torch.cuda.reset_peak_memory_stats(device)  # per run, also when a sweep runs jobs in one process

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("fit")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_s = self._stop("fit")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("test")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.test_s = self._stop("test")

    # -- epochs ------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run resumed mid-epoch or in validation re-enters its epoch without ``on_train_epoch_start``:
        its clock starts here, and the epoch is marked as timed in part."""
        self._start("epoch")
        self._val_s, self._clips, self._resumed = 0.0, 0, True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("epoch")
        self._val_s, self._clips, self._resumed = 0.0, 0, False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        self._clips += len(first) * trainer.world_size

    def _fitting(self, trainer: L.Trainer) -> bool:
        """Validation inside an epoch of fit, not the sanity check nor ``trainer.validate``."""
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            self._start("val")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            self._val_s += self._stop("val")
        else:
            self._ended = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = self._stop("epoch")
        self.epochs.append(
            EpochTime(trainer.current_epoch, seconds - self._val_s, self._val_s, self._clips, self._resumed)
        )

    # -- what metrics.json records -----------------------------------------------------------------
    def whole(self) -> list[EpochTime]:
        """The epochs timed from start to end (an epoch resumed after a stop was timed only in part),
        or all of them when none was."""
        return [e for e in self.epochs if not e.resumed] or self.epochs

    def summary(self) -> dict[str, Any]:
        """Means over the whole epochs of this run (a resumed run counts its own), the per-epoch lists
        (with the epochs timed in part), spans, peaks."""
        whole = self.whole()

        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 3) if values else None

        trained = [e for e in self.epochs if e.clips]
        cuda_peak = torch.cuda.max_memory_allocated(self._cuda) / 2**20 if self._cuda is not None else None
        return {
            "epoch_s": mean([e.seconds for e in whole]),
            "train_epoch_s": mean([e.train_s for e in whole]),
            "val_epoch_s": mean([e.val_s for e in whole]),
            "clips_per_s": round(sum(e.clips for e in trained) / sum(e.train_s for e in trained), 1)
            if trained
            else None,
            "per_epoch": {
                "train_s": [round(e.train_s, 3) for e in self.epochs],
                "val_s": [round(e.val_s, 3) for e in self.epochs],
                "resumed": [e.epoch for e in self.epochs if e.resumed],
            },
            "fit_s": _seconds(self.fit_s),
            "test_s": _seconds(self.test_s),
            "wall_s": _seconds(self._ended - self._started) if self._started and self._ended else None,
            "host_peak_mib": round(host_peak_mib(), 1),
            "cuda_peak_mib": round(cuda_peak, 1) if cuda_peak is not None else None,
        }


def _seconds(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN: the phase never ran


def timings(trainer: L.Trainer) -> dict[str, Any] | None:
    """The run's :class:`Timings` summary, or None when the callback was left out of ``callbacks``."""
    clock = next((c for c in trainer.callbacks if isinstance(c, Timings)), None)
    return clock.summary() if clock else None
