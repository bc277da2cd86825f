"""``checkpoints/last.ckpt`` after every validation and when training stops: what ``ckpt_path=last`` resumes.

Lightning 2.6 writes ``save_last`` checkpoints only when a top-k checkpoint is saved at the same
step, so with ``save_top_k=1`` last.ckpt lags at the best epoch and a resume repeats every epoch
since. ``LastCheckpoint`` rewrites ``last.ckpt`` after every validation (the end of each epoch)
and when training stops on an exception: a stop signal (``metalcore.training.stops``) or an error;
a stop in validation is saved so that the resumed run validates that epoch again, whole.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from metalcore.training.checkpoint_io import RESUME_HELP, disk_full

log = logging.getLogger("metalcore.train")


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

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if disk_full(exception):  # no room for another: the last whole one stays (see training.checkpoint_io)
            return
        if isinstance(exception, KeyboardInterrupt):  # a second Ctrl-C, anywhere in a step: not a state to keep
            return
        if trainer.state.fn == TrainerFn.FITTING and trainer.validating and not trainer.sanity_checking:
            validate_again(trainer)
        super().on_exception(trainer, pl_module, exception)
        # a stop signal's line comes from metalcore.training.stops, which knows which signal it was
        if trainer.is_global_zero and not isinstance(exception, SIGTERMException) and self.path.is_file():
            total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
            log.warning(
                "training stopped (%s: %s) in epoch %d/%s at step %d; saved %s; resume with %s",
                type(exception).__name__,
                (str(exception).splitlines() or [""])[0],
                trainer.current_epoch + 1,  # counted from 1, as the progress and epoch lines count
                total,
                trainer.global_step,
                self.path,
                RESUME_HELP,
            )


def validate_again(trainer: L.Trainer) -> None:
    """Make the checkpoint of a stop in validation run that validation again, whole, on resume.

    Saved as they stand, the counters say the validation finished (Lightning then skips it: the
    epoch is never validated and the best checkpoint is chosen without it) or, from its k-th batch,
    that it is to go on from there (its scores would then cover only the batches after the stop).
    Lightning's "restarted mid-evaluation" state with no batch done runs every batch again.
    """
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    progress.current.reset()
    progress.total.processed = progress.total.completed
    progress.total.ready = progress.total.started = progress.total.completed + 1
    progress.is_last_batch = False
