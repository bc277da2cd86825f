"""The LightningModule: Mel front-end + network + losses + clip- and track-level metrics.

The front-end and the network come in built (from Hydra config or from a checkpoint); this module
only knows what a genre classifier learns and how it is scored: what a run writes (figures, metrics.json)
is done by callbacks (``metalcore.training.callbacks``) that read ``results``. ``spec`` (a
``metalcore.models.spec.ModelSpec`` as a plain dict) records everything needed to rebuild it from the
checkpoint alone (class names, sample rate, front-end and network configs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from metalcore.models.base import Network
from metalcore.training.metrics import TrackPooling, classification_metrics, pooled_tracks

HELD_OUT = ("val", "test")


class GenreClassifier(LightningModule):
    """Raw audio ``(batch, channels, samples)`` -> class logits, trained with cross-entropy."""

    def __init__(
        self,
        frontend: nn.Module,
        net: Network,
        classes: list[str],
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        spec: dict[str, Any] | None = None,
        compile_cnn: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("classes", "spec", logger=False)
        self.frontend, self.net = frontend, net
        self.classes = list(classes)
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
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
        # the scores of the last validation and test runs, {"val"|"test": {"clip": {...}, "track": {...}}},
        # for callbacks and the caller; test scores also hold the confusion matrices
        self.results: dict[str, dict[str, dict[str, Any]]] = {}

    def configure_model(self) -> None:
        """``compile_cnn``: compile the part the network names (``Network.compilable``) with ``torch.compile``.

        Not the whole network: graphs break at RNNs (pytorch #167275), and the front-end's STFT stays
        fp32 and eager. Compiled in place, so checkpoints keep their plain parameter names.
        """
        part = self.net.compilable() if self.compile_cnn else None
        if part is not None:
            part.compile()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` -> logits ``(batch, classes)``."""
        return self.net(self.frontend(audio))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        audio, labels, _ = batch
        logits = self(audio).float()
        loss = F.cross_entropy(logits, labels)
        self.train_metrics.update(logits.detach().softmax(-1), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        return loss

    def _held_out_step(self, batch, stage: str, batch_idx: int) -> None:
        audio, labels, tracks = batch
        logits = self(audio).float()
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
        """The epoch's clip metrics on the random training crops (SpecAugment on, dropout active)."""
        scores = {f"train/{k}": float(v) for k, v in self.train_metrics.compute().items()}
        self.train_metrics.reset()
        self.log_dict({k: v for k, v in scores.items() if np.isfinite(v)}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.results["val"] = self._score("val")

    def on_test_epoch_end(self) -> None:
        scores = self._score("test")
        for level, metric in self.confusion.items():
            scores[level]["confusion"] = metric.compute().cpu().numpy().tolist()
            metric.reset()
        self.results["test"] = scores

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "epoch"},
        }
