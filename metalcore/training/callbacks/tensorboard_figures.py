"""TensorBoard pictures of a run: Mel-spectrograms of validation clips, and the test confusion matrices."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from metalcore.scoring.plots import confusion_figure, spectrogram_image


def tensorboard(trainer: Trainer) -> Any | None:
    """The SummaryWriter of the run's TensorBoard logger on rank 0; None without one."""
    if not trainer.is_global_zero:
        return None
    return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class TensorBoardFigures(Callback):
    """``mel/<class>_<i>``: the network's input for the first validation clips of each class (epoch 0);
    ``test/confusion_clip`` and ``test/confusion_track``: counts from the module's test ``results``.

    The Mel images come from running the module's front-end again on a few batches: it is in eval
    mode during validation, so they show exactly what the network reads, without SpecAugment.
    """

    def __init__(self, spectrogram_images: int = 4) -> None:
        self.spectrogram_images = spectrogram_images
        self._logged: Counter[str] = Counter()

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx=0
    ) -> None:
        """The first clips of each class (val batches run class by class, so the first batch alone
        would often show one class only), ``spectrogram_images`` in all."""
        classes = pl_module.classes
        per_class = -(-self.spectrogram_images // len(classes))
        if (
            trainer.sanity_checking
            or getattr(pl_module, "on_features", False)  # batches of cached features: no audio to draw
            or trainer.current_epoch != 0
            or sum(self._logged.values()) >= per_class * len(classes)
            or (writer := tensorboard(trainer)) is None
        ):
            return
        audio, labels, _ = batch
        with torch.no_grad():
            spec = pl_module.frontend(audio)  # (B, C, M, F)
        for i, label in enumerate(labels.tolist()):
            name = classes[label]
            if self._logged[name] < per_class:
                image = spectrogram_image(spec[i, 0].float().cpu().numpy())
                writer.add_image(f"mel/{name}_{self._logged[name]}", image, trainer.global_step, dataformats="HW")
                self._logged[name] += 1

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = tensorboard(trainer)
        if writer is None:
            return
        for level in ("clip", "track"):
            matrix = pl_module.results["test"][level]["confusion"]
            figure = confusion_figure(matrix, pl_module.classes, f"test, per {level}")
            writer.add_figure(f"test/confusion_{level}", figure, global_step=trainer.global_step)
