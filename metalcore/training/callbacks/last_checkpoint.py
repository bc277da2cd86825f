"""``checkpoints/last.ckpt`` after every validation and when training stops: what ``ckpt_path=last`` resumes.

Lightning 2.6 writes ``save_last`` checkpoints only when a top-k checkpoint is saved at the same
step, so with ``save_top_k=1`` last.ckpt lags at the best epoch and a resume repeats every epoch
since. ``LastCheckpoint`` rewrites ``last.ckpt`` after every validation (the end of each epoch)
and when training stops on an exception: SIGTERM (Lightning turns it into ``SIGTERMException`` at
the next batch end), Ctrl-C or an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("metalcore.train")

RESUME_HELP = "python -m metalcore.train hydra.run.dir=<run folder> ckpt_path=last, with the run's overrides"


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``: the model after the last validation, or where training stopped."""

    def __init__(self, dirpath: str) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,  # unmonitored: the latest, replacing the one before
            save_last=False,
            enable_version_counter=False,  # always the same name, so ckpt_path=last finds it
            save_on_exception=True,
        )

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if trainer.is_global_zero and (Path(self.dirpath) / "last.ckpt").is_file():
            total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
            log.warning(
                "training stopped (%s) in epoch %d/%s at step %d; saved %s; resume with %s",
                _why(exception),
                trainer.current_epoch + 1,  # counted from 1, as the progress and epoch lines count
                total,
                trainer.global_step,
                Path(self.dirpath) / "last.ckpt",
                RESUME_HELP,
            )


def _why(exception: BaseException) -> str:
    if isinstance(exception, SIGTERMException):
        return "SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return "Ctrl-C"
    return f"{type(exception).__name__}: {str(exception).splitlines()[0] if str(exception) else ''}"
