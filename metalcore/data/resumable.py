"""A training epoch that resumes where it stopped: the batches done before the stop are not served again.

Lightning restores the loop counters of a checkpoint saved mid-epoch but starts the data loader at
the epoch's first batch (a plain ``DataLoader`` has no position to restore), so the resumed epoch
would train on its first batches twice and never see its last ones. ``MidEpochResume`` records in
each checkpoint how many training batches the epoch had completed (the datamodule's
``state_dict``, which Lightning saves), and the first pass of the training sampler after a resume
skips the keys of those batches. The sampler's order depends on ``(seed, epoch)`` only
(``metalcore.data.segments.RandomCrops``), so the remaining batches are exactly the ones the
stopped run would have served.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from itertools import islice
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import Sampler


class SkipFirst(Sampler):
    """``sampler`` with its first ``skip`` keys left out of the next pass only; its length stays the
    whole epoch's, which is what Lightning counts the epoch's batches from."""

    def __init__(self, sampler: Sized, skip: int = 0) -> None:
        self.sampler, self.skip = sampler, skip

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        return islice(iter(self.sampler), skip, None)


class MidEpochResume(LightningDataModule):
    """A datamodule whose training sampler, wrapped by ``resumable``, continues a stopped epoch."""

    _resume_batches = 0

    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        # all done (a stop in validation): the resumed epoch takes no batch, and an empty first pass
        # would leave Lightning's loader exhausted for the next epoch too
        return {"train_batches_done": done if done < trainer.num_training_batches else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_batches = int(state_dict.get("train_batches_done", 0))

    def resumable(self, sampler: Sized, keys_per_batch: int) -> SkipFirst:
        """``sampler`` for the training loader; ``keys_per_batch`` of its keys make one step of every rank."""
        skip, self._resume_batches = self._resume_batches * keys_per_batch, 0
        return SkipFirst(sampler, skip)
