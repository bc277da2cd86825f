"""Config values checked together, before any work: what no constructor sees in time.

Each class checks its own arguments when it is built (``MusicDataModule``, ``MelFrontend``,
``SpecAugment``...), which happens before decoding. What remains is checked here, in one place:
values handed to PyTorch or Lightning only later (the optimiser and scheduler are partials built in
``configure_optimizers``, DataLoader workers when the first loader is made, the checkpoint's
monitor after a whole epoch), and values that only make sense against another group (a mask
against the Mel bands, a monitor against the metrics a run logs). Every message names the key and
the range it takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from metalcore.core.errors import UserError
from metalcore.scoring.metrics import canonical, logged_names

# scheduler keys that count steps or epochs, with what one unit of them is
_SCHEDULE_LENGTHS = {"T_max": "epochs in one cosine half-period", "T_0": "epochs in the first restart period"}


def check_config(cfg: DictConfig) -> None:
    """Raise UserError for the first value of ``cfg`` a run cannot use."""
    for check in CHECKS:
        check(cfg)


def _at_least(key: str, value: Any, low: int, meaning: str = "") -> None:
    if value is not None and value < low:
        raise UserError(f"{key}={value} must be {low} or more{f' ({meaning})' if meaning else ''}")


def check_workers(cfg: DictConfig) -> None:
    _at_least("data.num_workers", cfg.data.get("num_workers"), 0, "0 loads in the training process")
    _at_least("data.workers_for_decoding", cfg.data.get("workers_for_decoding"), 0, "0 starts one per core")


def check_optimiser(cfg: DictConfig) -> None:
    """The learning rate and weight decay (PyTorch refuses them only when the first epoch starts)."""
    optimizer = cfg.module.get("optimizer") or {}
    lr = optimizer.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise UserError(f"module.optimizer.lr={float(lr)} must be a positive finite number (1e-3 is usual)")
    decay = optimizer.get("weight_decay")
    if decay is not None and not decay >= 0:
        raise UserError(f"module.optimizer.weight_decay={decay} must be 0 or more")


def check_scheduler(cfg: DictConfig) -> None:
    """A schedule of length 0 divides by zero at the end of the first epoch."""
    scheduler = cfg.module.get("scheduler") or {}
    for key, unit in _SCHEDULE_LENGTHS.items():
        _at_least(f"module.scheduler.{key}", scheduler.get(key), 1, unit)


def check_masks(cfg: DictConfig) -> None:
    """A SpecAugment frequency mask no wider than the Mel bands it masks (wider, it silently masks them all).

    A time mask may exceed a short segment's frames: it then masks up to the whole clip, as asked.
    """
    spectrogram = (cfg.get("augment") or {}).get("spectrogram") or {}
    n_mels = cfg.features.get("n_mels")
    for name, node in spectrogram.items():
        width = (node or {}).get("freq_mask")
        if width is not None and n_mels is not None and width > n_mels:
            raise UserError(
                f"augment.spectrogram.{name}.freq_mask={width} is wider than the {n_mels} Mel bands "
                f"(features.n_mels); use 0 to {n_mels}"
            )


def check_monitor(monitor: str | None, mode: str) -> None:
    """``monitor`` is a metric a run logs at validation (or None: the latest epoch), ``mode`` min or max."""
    names = [n for n in logged_names() if n.startswith("val/")]
    if monitor is not None and monitor not in names:
        raise UserError(
            f"callbacks.model_checkpoint.monitor={monitor} is not a metric a run logs at validation; "
            f"use one of: {', '.join(names)}"
        )
    if mode not in ("min", "max"):
        raise UserError(f"callbacks.model_checkpoint.mode={mode} must be min or max")


def check_checkpoint_monitor(cfg: DictConfig) -> None:
    """The best checkpoint's monitor and mode, checked before decoding rather than when the callback is made."""
    node = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if node:
        check_monitor(node.get("monitor"), node.get("mode", "min"))


def check_epochs(cfg: DictConfig) -> None:
    if cfg.trainer.get("max_epochs") == 0:  # Lightning would test the untrained model and exit 0
        raise UserError("trainer.max_epochs=0 trains nothing; give 1 or more (or -1 for no limit with max_steps)")


def check_optimized_metric(cfg: DictConfig) -> None:
    """A misspelt ``optimized_metric`` is refused before training, with the names a run logs."""
    name = cfg.get("optimized_metric")
    names = logged_names()
    if name and canonical(name) not in {canonical(n) for n in names}:
        raise UserError(f"optimized_metric={name} is not a metric a run logs; use one of: {', '.join(names)}")


CHECKS: tuple[Callable[[DictConfig], None], ...] = (
    check_epochs,
    check_workers,
    check_optimiser,
    check_scheduler,
    check_masks,
    check_checkpoint_monitor,
    check_optimized_metric,
)
