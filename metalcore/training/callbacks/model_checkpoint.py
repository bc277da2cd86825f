"""``checkpoints/epoch<NNN>.ckpt``: the best epoch by ``monitor``, the one that is tested, calibrated,
evaluated and exported.

Lightning's ``ModelCheckpoint`` finds a misspelt monitor only when the first epoch ends, and a bad
mode as a traceback. ``BestCheckpoint`` checks both against the metrics a run logs at validation as
it is made, with ``metalcore.training.checks.check_monitor``, which a run also calls before any data
is decoded (without importing Lightning: ``prepare`` runs it too).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from metalcore.training.checks import check_monitor


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
