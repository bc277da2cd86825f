"""One aligned line per epoch, to the console and the run's ``train.log``, on a terminal too.

:class:`EpochLine` computes no metric: a synced metric computed on rank 0 alone is a collective the
other ranks never join, and DDP hangs (Lightning #21264). It therefore writes an epoch's line only
once Lightning has computed that epoch's metrics on every rank (when the next epoch starts, or
training ends), and reads them from ``trainer.callback_metrics`` then.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar, TQDMProgressBar

from metalcore.training.callbacks.timings import EpochTime, Timings

log = logging.getLogger("metalcore.train")

# (label, logged name) of the numbers an epoch line shows, in order
FIELDS = (
    ("train loss", "train/loss_epoch"),
    ("val loss", "val/loss"),
    ("val track acc", "val/track_acc"),
    ("f1", "val/track_f1"),
)


def clock(seconds: float) -> str:
    """``h:mm:ss``, or ``-`` when unknown."""
    if not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _number(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "     -"
    return f"{value:6.4f}" if math.isfinite(value) else f"{value:>6}"


def emit(trainer: L.Trainer, message: str) -> None:
    """Log ``message``; beside a bar drawn on a terminal, the console's copy goes through the bar, which
    would otherwise draw over it (the log file's copy is written as usual)."""
    bar = trainer.progress_bar_callback
    if not (isinstance(bar, (RichProgressBar, TQDMProgressBar)) and bar.is_enabled):
        log.info("%s", message)
        return
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (message,), None)
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
                handler.handle(record)
            elif record.levelno >= handler.level:
                bar.print(handler.format(record))  # tqdm.write; rich draws what reaches sys.stdout above its bar
        logger = logger.parent if logger.propagate else None


class EpochLine(Callback):
    """``epoch  3/10  train loss 0.4123  val loss 0.3904  val track acc 0.8333  f1 0.8286  best val/loss
    0.3904 (epoch  3)  time   42.1 s  512.3 clips/s  ETA 0:04:55``: one line per epoch, on rank 0.

    Seconds and clips per second come from the run's :class:`Timings` callback (``-`` without it);
    the best value is the checkpoint callback's monitored metric.
    """

    def __init__(self) -> None:
        self._pending: EpochTime | None = None
        self._best: float | None = None
        self._best_epoch: int | None = None

    @staticmethod
    def _timings(trainer: L.Trainer) -> Timings | None:
        return next((c for c in trainer.callbacks if isinstance(c, Timings)), None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback  # a resumed run starts from its checkpoint's best, epoch unknown
        score = checkpoint.best_model_score if checkpoint is not None else None
        self._best, self._best_epoch = (float(score) if score is not None else None), None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the epoch's training metrics are computed (and synced) after this hook: remember, write later
        timings = self._timings(trainer)
        self._pending = timings.epochs[-1] if timings and timings.epochs else EpochTime(trainer.current_epoch, 0, 0, 0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        epoch, self._pending = self._pending, None
        if epoch is None or not trainer.is_global_zero:
            return
        emit(trainer, self.line(trainer, epoch))

    def line(self, trainer: L.Trainer, epoch: EpochTime) -> str:
        metrics = trainer.callback_metrics  # computed on every rank already: a plain read here
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        width = len(str(total or 999))
        parts = [f"epoch {epoch.epoch + 1:>{width}}/{total or '?'}"]
        parts += [
            f"{label} {_number(metrics.get(key, metrics.get(key.removesuffix('_epoch'))))}" for label, key in FIELDS
        ]
        parts.append(self._best_part(trainer, epoch.epoch, width))
        timed = epoch.seconds > 0 and not epoch.resumed  # a resumed epoch's time is only its part after the stop
        parts.append(f"time {epoch.seconds:6.1f} s" if timed else "time      - s")
        parts.append(f"{epoch.clips_per_s:7.1f} clips/s" if epoch.clips and epoch.train_s > 0 else "      - clips/s")
        parts.append(f"ETA {clock(self._eta(trainer, epoch, total))}")
        return "  ".join(parts)

    def _best_part(self, trainer: L.Trainer, epoch: int, width: int) -> str:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or not getattr(checkpoint, "monitor", None):
            return "best -"
        score = checkpoint.best_model_score
        best = float(score) if score is not None else None
        if best is not None and best != self._best:
            self._best, self._best_epoch = best, epoch
        at = self._best_epoch + 1 if self._best_epoch is not None else "?"
        return f"best {checkpoint.monitor} {_number(best)} (epoch {at:>{width}})"

    def _eta(self, trainer: L.Trainer, epoch: EpochTime, total: int | None) -> float:
        timings = self._timings(trainer)
        if total is None or not timings or not timings.epochs:
            return math.nan
        whole = timings.whole()
        mean = sum(e.seconds for e in whole) / len(whole)
        return mean * (total - epoch.epoch - 1) if not whole[0].resumed else math.nan
