"""``checkpoints/epoch<NNN>.ckpt``: the best epoch by ``monitor``, the one that is tested, calibrated,
evaluated and exported.

Lightning's ``ModelCheckpoint`` finds a misspelt monitor only when the first epoch ends, and a bad
mode as a traceback. ``BestCheckpoint`` checks both against the metrics a run logs at validation as
it is made, and ``metalcore.training.checks`` runs the same check before any data is decoded.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from metalcore.core.errors import UserError
from metalcore.scoring.metrics import logged_names


class BestCheckpoint(ModelCheckpoint):
    """The best ``save_top_k`` epochs by ``monitor``; ``last.ckpt`` is ``LastCheckpoint``'s, so ``save_last``
    stays off (with Lightning 2.6 it would be rewritten only when a new best is saved)."""

    def __init__(
        self,
        dirpath: str,
        filename: str = "epoch{epoch:03d}",
        monitor: str = "val/loss",
        mode: str = "min",
        save_top_k: int = 1,
        auto_insert_metric_name: bool = False,
        save_last: bool = False,
        **options: Any,
    ) -> None:
        check_monitor(monitor, mode)
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            auto_insert_metric_name=auto_insert_metric_name,
            save_last=save_last,
            **options,
        )

    @property
    def state_key(self) -> str:
        """Lightning's key for a ModelCheckpoint's state: checkpoints saved before this class resume their best."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)


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
