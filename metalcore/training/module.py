"""The LightningModule: Mel front-end + network + losses + clip- and track-level metrics.

The front-end and the network come in built (from Hydra config or from a checkpoint); this module
only knows what a genre classifier learns and how it is scored. ``spec`` records everything needed
to rebuild it from the checkpoint alone (class names, sample rate, front-end and network configs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from metalcore.models.augment import Augment
from metalcore.training.metrics import TrackPooling, classification_metrics, pooled_tracks
from metalcore.training.plots import confusion_figure, spectrogram_image

HELD_OUT = ("val", "test")


class GenreClassifier(LightningModule):
    """Raw audio ``(batch, channels, samples)`` -> class logits, trained with cross-entropy."""

    def __init__(
        self,
        frontend: nn.Module,
        net: nn.Module,
        classes: list[str],
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        spec: dict | None = None,
        spectrogram_images: int = 4,
        compile_cnn: bool = False,
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("classes", "spec", logger=False)
        self.frontend, self.net = frontend, net
        # used in training_step only; it holds no weights, so checkpoints are the same without it
        self.augment = augment if augment is not None else Augment()
        self.classes = list(classes)
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.spectrogram_images = spectrogram_images
        self.compile_cnn = compile_cnn
        n = len(self.classes)
        self.train_metrics = classification_metrics(n)  # on the random training crops
        self.clip_metrics = nn.ModuleDict({s: classification_metrics(n) for s in HELD_OUT})
        self.track_metrics = nn.ModuleDict({s: classification_metrics(n) for s in HELD_OUT})
        self.pooling = nn.ModuleDict({s: TrackPooling() for s in HELD_OUT})
        # clip counts are summed over DDP ranks; track scores come from pooling already gathered from
        # every rank, so they must not be summed again
        self.confusion = nn.ModuleDict(
            {"clip": MulticlassConfusionMatrix(n), "track": MulticlassConfusionMatrix(n, sync_on_compute=False)}
        )
        self.results: dict[str, Any] = {}
        self._images_logged: Counter[str] = Counter()

    def configure_model(self) -> None:
        """``compile_cnn``: compile the network's convolutional stack with ``torch.compile``.

        Only the CNN: graphs break at RNNs (pytorch #167275), and the front-end's STFT stays fp32
        and eager. Compiled in place, so checkpoints keep their plain parameter names.
        """
        if self.compile_cnn and isinstance(getattr(self.net, "cnn", None), nn.Module):
            self.net.cnn.compile()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` -> logits ``(batch, classes)``."""
        return self.net(self.frontend(audio))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        audio, labels, _ = batch
        audio, targets = self.augment(audio, labels, len(self.classes))
        logits = self.net(self.augment.transform_spectrogram(self.frontend(audio))).float()
        loss = F.cross_entropy(logits, targets)
        self.train_metrics.update(logits.detach().softmax(-1), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        return loss

    def _held_out_step(self, batch, stage: str, batch_idx: int) -> None:
        audio, labels, tracks = batch
        spec = self.frontend(audio)
        logits = self.net(spec).float()
        probs = logits.softmax(-1)
        self.log(
            f"{stage}/loss",
            F.cross_entropy(logits, labels),
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels),
            sync_dist=True,
        )
        self.clip_metrics[stage].update(probs, labels)
        self.pooling[stage].update(probs, labels, tracks)
        if stage == "test":
            self.confusion["clip"].update(probs, labels)
        if stage == "val" and self.current_epoch == 0 and not self.trainer.sanity_checking:
            self._log_spectrograms(spec, labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._held_out_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx: int) -> None:
        self._held_out_step(batch, "test", batch_idx)

    # -- epoch ends ------------------------------------------------------------------------------
    def _score(self, stage: str) -> dict[str, dict[str, float]]:
        clip = {k: float(v) for k, v in self.clip_metrics[stage].compute().items()}
        track_probs, track_labels = pooled_tracks(self.pooling[stage])
        track = {k: float(v) for k, v in self.track_metrics[stage](track_probs, track_labels).items()}
        for metric in (self.clip_metrics[stage], self.track_metrics[stage], self.pooling[stage]):
            metric.reset()
        scores = {**{f"{stage}/{k}": v for k, v in clip.items()}, **{f"{stage}/track_{k}": v for k, v in track.items()}}
        # the same values on every DDP rank (computed from gathered states): the sync only says so
        self.log_dict({k: v for k, v in scores.items() if np.isfinite(v)}, prog_bar=False, sync_dist=True)
        if stage == "test":
            self.confusion["track"].update(track_probs, track_labels)
        return {"clip": clip, "track": track}

    def on_train_epoch_end(self) -> None:
        """The epoch's clip metrics on the random training crops (augmented, dropout active)."""
        scores = {f"train/{k}": float(v) for k, v in self.train_metrics.compute().items()}
        self.train_metrics.reset()
        self.log_dict({k: v for k, v in scores.items() if np.isfinite(v)}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        scores = self._score("test")
        for level, metric in self.confusion.items():
            matrix = metric.compute().cpu().numpy()
            metric.reset()
            scores[level]["confusion"] = matrix.tolist()
            self._log_figure(f"test/confusion_{level}", confusion_figure(matrix, self.classes, f"test, per {level}"))
        self.results = scores

    # -- TensorBoard extras ----------------------------------------------------------------------
    def _tensorboard(self):
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger) and self.trainer.is_global_zero:
                return logger.experiment
        return None

    def _log_figure(self, tag: str, figure) -> None:
        writer = self._tensorboard()
        if writer is not None:
            writer.add_figure(tag, figure, global_step=self.global_step)

    def _log_spectrograms(self, spec: torch.Tensor, labels: torch.Tensor) -> None:
        """The first validation clips of each class (val batches run class by class, so the first
        batch alone would often show one class only), ``spectrogram_images`` in all."""
        writer = self._tensorboard()
        per_class = -(-self.spectrogram_images // len(self.classes))
        if writer is None or sum(self._images_logged.values()) >= per_class * len(self.classes):
            return
        for i, label in enumerate(labels.tolist()):
            name = self.classes[label]
            if self._images_logged[name] < per_class:
                image = spectrogram_image(spec[i, 0].float().cpu().numpy())
                writer.add_image(f"mel/{name}_{self._images_logged[name]}", image, self.global_step, dataformats="HW")
                self._images_logged[name] += 1

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "epoch"},
        }
