"""Scores for clips and for whole tracks, the way the study reported them and the way it should have.

The study's figures are weighted averages over clips; we report those, their macro averages, AUROC,
PR-AUC (average precision) and the confusion matrix, and the same again per track after pooling each
track's clip probabilities. AUROC and PR-AUC are undefined when a split lacks a class; they are then
reported as NaN rather than failing the run.
"""

from __future__ import annotations

import re

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def higher_is_better(metric: str) -> bool:
    """Scores are maximised, losses minimised (the rule ``optimized_metric``'s direction follows too)."""
    return "loss" not in re.split(r"[./]", metric)[-1]


def canonical(metric: str) -> str:
    """Logged names (``test/track_f1``, ``test/acc``) as metrics.json paths (``test.track.f1``); others as given."""
    stage, slash, key = metric.partition("/")
    if slash and stage == "test":
        level, key = ("track", key[len("track_") :]) if key.startswith("track_") else ("clip", key)
        return f"test.{level}.{key}"
    return metric


def logged_names() -> list[str]:
    """Every metric name a run logs for validation and test (what ``optimized_metric`` may name)."""
    scores = list(classification_metrics(2))
    return ["val/loss"] + [
        f"{stage}/{level}{name}" for stage in ("val", "test") for level in ("", "track_") for name in scores
    ]


def _absent_class(metric: MulticlassAUROC | MulticlassAveragePrecision) -> bool:
    target = torch.cat(metric.target) if isinstance(metric.target, list) else metric.target
    return target.numel() == 0 or torch.unique(target).numel() < metric.num_classes


class SafeAUROC(MulticlassAUROC):
    """Macro AUROC that yields NaN instead of an error or a misleading 0 when a class is absent."""

    def compute(self) -> torch.Tensor:
        return torch.tensor(float("nan"), device=self.device) if _absent_class(self) else super().compute()


class SafeAveragePrecision(MulticlassAveragePrecision):
    """Macro PR-AUC (average precision) that yields NaN when a class is absent, as ``SafeAUROC`` does."""

    def compute(self) -> torch.Tensor:
        return torch.tensor(float("nan"), device=self.device) if _absent_class(self) else super().compute()


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, precision, recall and F1 (macro and weighted), macro AUROC and PR-AUC, on probabilities."""
    kw = {"num_classes": num_classes}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(average="micro", **kw),
            "precision": MulticlassPrecision(average="macro", **kw),
            "recall": MulticlassRecall(average="macro", **kw),
            "f1": MulticlassF1Score(average="macro", **kw),
            "precision_weighted": MulticlassPrecision(average="weighted", **kw),
            "recall_weighted": MulticlassRecall(average="weighted", **kw),
            "f1_weighted": MulticlassF1Score(average="weighted", **kw),
            "auroc": SafeAUROC(**kw),
            "pr_auc": SafeAveragePrecision(**kw),
        }
    )
