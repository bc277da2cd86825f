"""The LightningModule: Mel front-end + network + losses + clip- and track-level metrics.

The front-end and the network come in built (from Hydra config or from a checkpoint); this module
only knows what a genre classifier learns and how it is scored, test intervals and the temperature
included: what a run writes (figures, metrics.json) is done by callbacks
(``metalcore.training.callbacks``) that read ``results`` and ``trust``. ``spec`` (a
``metalcore.models.spec.ModelSpec`` as a plain dict) records everything needed to rebuild it from the
checkpoint alone (class names, sample rate, front-end and network configs).

Under DDP every epoch-level value is reduced over the ranks here, in the module's own epoch-end
hooks, which every rank runs at the same point, and logged already reduced (no ``sync_dist``).
Lightning computes logged epoch values lazily, when something first reads them: rank 0's progress
bar does so in its ``on_train_epoch_end``, before the module's hook, while the other ranks (no bar)
reach the module's hook first. A sync inside Lightning's computation would then run in a different
order on each rank, and the ranks would wait for each other forever (Lightning #21264, #19604).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassConfusionMatrix

from metalcore.models.augment import Augment
from metalcore.models.base import Network
from metalcore.models.weights import record_digest
from metalcore.scoring.metrics import classification_metrics
from metalcore.scoring.pooling_metric import TrackPooling, pooled_clips, pooled_tracks
from metalcore.uncertainty import trust

HELD_OUT = ("val", "test")
EPOCH_METRICS = "epoch_metrics"  # the checkpoint key of the running epoch's training metric states
# Lightning advises sync_dist=True for epoch values logged under DDP; these are reduced already (see above)
warnings.filterwarnings(
    "ignore", message=r"It is recommended to use `self.log\('(train|val|test)/", category=PossibleUserWarning
)


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
        channels_last: bool = True,
        compile_mode: str = "default",
        augment: Augment | None = None,
        bootstrap_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("classes", "spec", logger=False)
        self.frontend, self.net = frontend, net
        # used in training_step only; it holds no weights, so checkpoints are the same without it
        self.augment = augment if augment is not None else Augment()
        self.classes = list(classes)
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.compile_cnn, self.compile_mode, self.channels_last = compile_cnn, compile_mode, channels_last
        self.bootstrap_seed = bootstrap_seed
        n = len(self.classes)
        self.train_loss = MeanMetric()  # mean over clips, as is the held-out loss
        self.train_metrics = classification_metrics(n)  # on the random training crops
        self.loss = nn.ModuleDict({s: MeanMetric() for s in HELD_OUT})
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
        # the last validation's and test's clips (probabilities, labels, track ids): what the bootstrap
        # intervals and the temperature fit need
        self.held_out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # after a test: the test scores with their 95 % intervals, the bootstrap's settings and the
        # temperature fitted on the last validation's clips (metalcore.uncertainty.trust.summary)
        self.trust: dict[str, Any] = {}
        # batches carry a frozen network's cached clip features instead of audio (metalcore.training.probe):
        # the steps then run the network's head alone; forward, and so inference, still take audio
        self.on_features = False

    def configure_model(self) -> None:
        """``compile_cnn``: compile the part the network names (``Network.compilable``) with ``torch.compile``.

        Not the whole network: graphs break at RNNs (pytorch #167275), and the front-end's STFT stays
        fp32 and eager. Compiled in place, so checkpoints keep their plain parameter names.
        """
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        part = self.net.compilable() if self.compile_cnn else None
        if part is not None:
            part.compile(mode=self.compile_mode)

    def classify(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, n_mels, frames)`` -> logits; ``channels_last`` convolutions give the same
        weights and outputs in faster steps on the CPUs timed (``python -m metalcore.bench --train``)."""
        return self.net(spec.contiguous(memory_format=torch.channels_last) if self.channels_last else spec)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` -> logits ``(batch, classes)``."""
        return self.classify(self.frontend(audio))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        audio, labels, _ = batch
        audio, targets = self.augment(audio, labels, len(self.classes))
        if self.on_features:  # no augmentation reaches cached features: the run refuses any but augment=none
            logits = self.net.from_features(audio).float()
        else:
            logits = self.classify(self.augment.transform_spectrogram(self.frontend(audio))).float()
        loss = F.cross_entropy(logits, targets)
        self.train_loss.update(loss.detach(), len(labels))
        self.train_metrics.update(logits.detach().softmax(-1), labels)
        # a step value is synced as it is logged, by every rank in training_step: never later, by a reader
        self.log(
            "train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(labels), sync_dist=True
        )
        return loss

    def _held_out_step(self, batch, stage: str, batch_idx: int) -> None:
        audio, labels, tracks = batch
        logits = (self.net.from_features(audio) if self.on_features else self(audio)).float()
        probs = logits.softmax(-1)
        self.loss[stage].update(F.cross_entropy(logits, labels), len(labels))
        self.clip_metrics[stage].update(probs, labels)
        self.pooling[stage].update(probs, labels, tracks)
        if stage == "test":
            self.confusion["clip"].update(probs, labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._held_out_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx: int) -> None:
        self._held_out_step(batch, "test", batch_idx)

    # -- epoch ends ------------------------------------------------------------------------------
    def _log_reduced(self, stage: str, loss: torch.Tensor, scores: dict[str, float]) -> None:
        """Log ``stage/loss`` and ``scores``, all computed from states gathered from every rank: no
        ``sync_dist``, so reading them (a progress bar on rank 0 only) needs no collective.

        The bar shows the held-out loss only: it draws an epoch's last line before the module's
        ``on_train_epoch_end``, where the epoch's training loss would still be the previous epoch's.
        """
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train")
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items() if np.isfinite(v)})

    def _score(self, stage: str) -> dict[str, dict[str, float]]:
        loss = self.loss[stage].compute()
        clip = {k: float(v) for k, v in self.clip_metrics[stage].compute().items()}
        track_probs, track_labels = pooled_tracks(self.pooling[stage])
        self.held_out[stage] = pooled_clips(self.pooling[stage])
        track = {k: float(v) for k, v in self.track_metrics[stage](track_probs, track_labels).items()}
        for metric in (self.loss[stage], self.clip_metrics[stage], self.track_metrics[stage], self.pooling[stage]):
            metric.reset()
        self._log_reduced(stage, loss, {**clip, **{f"track_{k}": v for k, v in track.items()}})
        if stage == "test":
            self.confusion["track"].update(track_probs, track_labels)
        return {"clip": clip, "track": track}

    def on_train_epoch_end(self) -> None:
        """The epoch's loss and clip metrics on the random training crops (augmented, dropout active)."""
        loss = self.train_loss.compute()
        scores = {k: float(v) for k, v in self.train_metrics.compute().items()}
        self.train_loss.reset()
        self.train_metrics.reset()
        self._log_reduced("train", loss, scores)

    def on_validation_epoch_end(self) -> None:
        self.results["val"] = self._score("val")

    def on_test_epoch_end(self) -> None:
        scores = self._score("test")
        for level, metric in self.confusion.items():
            scores[level]["confusion"] = metric.compute().cpu().numpy().tolist()
            metric.reset()
        self.results["test"] = scores
        self.trust = trust.summary(scores, self.held_out, self.bootstrap_seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the digest of the weights (predict, evaluate, export and a resume verify it), and the
        running epoch's training metrics: a run stopped mid-epoch or in validation scores the epoch
        over all its batches once resumed. Under DDP they are rank 0's, which alone is restored."""
        checkpoint[EPOCH_METRICS] = {name: dict(metric.metric_state) for name, metric in self._epoch_metrics()}
        record_digest(checkpoint)  # last: over everything the checkpoint holds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(EPOCH_METRICS)
        if not states or self.global_rank != 0:
            return
        for name, metric in self._epoch_metrics():
            for key, value in states.get(name, {}).items():
                setattr(metric, key, value)
            metric._update_count = 1  # restored, not empty: compute() must not warn it was never updated

    def _epoch_metrics(self) -> list[tuple[str, Metric]]:
        """The training metrics an epoch accumulates until its end (held-out ones start afresh each validation)."""
        return [("train_loss", self.train_loss), *((f"train_metrics.{k}", m) for k, m in self.train_metrics.items())]

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        """The network's parameter groups (``Network.parameter_groups``), each at the configured
        learning rate times its ``lr_scale``; the front-end's trainable parameters (if any) join the first."""
        groups = [dict(g) for g in self.net.parameter_groups()]
        groups[0]["params"] = [*groups[0]["params"], *(p for p in self.frontend.parameters() if p.requires_grad)]
        optimizer = self.make_optimizer(groups)
        for group in optimizer.param_groups:  # before the scheduler reads each group's initial rate
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.make_scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "epoch"},
        }
