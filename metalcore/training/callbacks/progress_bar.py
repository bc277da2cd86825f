"""Lightning's progress bar on a terminal; plain periodic lines where no terminal draws one.

Under ``sbatch``, ``nohup`` or ``> train.log 2>&1`` a progress bar either draws nothing (rich) or
floods the file with carriage returns (tqdm). ``progress_bar`` picks at run time: Lightning's bar on
a terminal, :class:`PlainProgress` otherwise. ``PlainProgress`` computes no metric (a synced metric
computed on rank 0 alone is a collective the other ranks never join, and DDP hangs): it shows the
step's own loss.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

from metalcore.training.callbacks.epoch_line import clock, log


class PlainProgress(ProgressBar):
    """A progress line at most every ``every_seconds`` inside a long epoch, validation or test, for logs:
    ``epoch  3/10  train batch 120/400  ( 30%)  loss 0.4123    9.8 batches/s  ETA 0:00:28``."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        super().__init__()
        self.every_seconds = every_seconds
        self._enabled = True
        self._started = self._last = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        log.info("%s", " ".join(map(str, args)))

    def _begin(self) -> None:
        self._started = self._last = time.monotonic()

    def _report(self, trainer: L.Trainer, phase: str, done: int, total: float, loss: Any = None) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < self.every_seconds:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        known = math.isfinite(total) and total > 0
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        fitting = trainer.state.fn == TrainerFn.FITTING  # not trainer.validate or test after fit
        parts = [f"epoch {trainer.current_epoch + 1:>{len(str(epochs))}}/{epochs}"] if fitting else []
        width = len(str(int(total))) if known else 1
        parts.append(f"{phase} batch {done:>{width}}/{int(total) if known else '?'}")
        if known:
            parts.append(f"({100 * done / total:3.0f}%)")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts.append(f"{rate:5.1f} batches/s")
        parts.append(f"ETA {clock((total - done) / rate) if known else '-'}")
        log.info("%s", "  ".join(parts))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._report(trainer, "train", batch_idx + 1, self.total_train_batches, loss)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin()

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self.has_dataloader_changed(dataloader_idx)
        phase = "sanity check" if trainer.sanity_checking else "validation"
        self._report(trainer, phase, batch_idx + 1, self.total_val_batches_current_dataloader)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin()

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self.has_dataloader_changed(dataloader_idx)
        self._report(trainer, "test", batch_idx + 1, self.total_test_batches_current_dataloader)


def interactive_console() -> bool:
    """Whether both output streams are terminals (a bar redrawn in place can be read there, nowhere else)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def progress_bar(every_seconds: float = 30.0, enabled: bool = True, interactive: bool | None = None) -> Callback:
    """Lightning's bar on a terminal, :class:`PlainProgress` lines every ``every_seconds`` otherwise.

    ``interactive`` forces the choice (None: look at stdout and stderr). With ``enabled`` false
    (``trainer.enable_progress_bar=false``) there is no progress at all: Lightning refuses a progress
    bar callback then, so a callback that does nothing stands in its place.
    """
    if not enabled:
        return Callback()
    if interactive if interactive is not None else interactive_console():
        return RichProgressBar() if _RICH_AVAILABLE else TQDMProgressBar()
    return PlainProgress(every_seconds)
