"""The learning rate of every epoch (or step) in TensorBoard, and nothing when the run has no logger.

Lightning's ``LearningRateMonitor`` refuses to start without a logger, so ``logger=null`` (sweeps
that keep only metrics.json) would fail at the first epoch; ``LearningRates`` then stays silent.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor


class LearningRates(LearningRateMonitor):
    """``LearningRateMonitor`` that logs only where there is a logger to log to."""

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
