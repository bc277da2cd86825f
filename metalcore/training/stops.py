"""SIGTERM and Ctrl-C stop a run at a safe point, on one process or on every DDP rank at once.

Lightning stops at a batch end on SIGTERM only, and ends the run with ``SIGTERMException``, an
exit of status 0 that a scheduler takes for success; a Ctrl-C raised ``KeyboardInterrupt``
wherever it landed, possibly between an optimiser step and the count of its batch (the resumed
epoch then ran that batch twice). Under DDP, Lightning's SIGTERM handler broadcasts from rank 0
inside the signal handler, at whatever point each rank was: ranks then wait in mismatched
collectives forever.

Here the first SIGTERM or Ctrl-C asks for a stop, and a second Ctrl-C stops at once. On one
process the stop comes at the end of the running batch (of training, validation or test). Under
DDP no collective runs inside a handler: the ranks agree at the end of each training batch (one
all-reduce of a flag) and at the end of each validation or test, so every rank stops at the same
point; a stop asked for during validation or test takes effect when it ends. Outside the loops
(the DataModule's setup, restoring a checkpoint, between fit and test) no batch end will come, and
Lightning forgets a SIGTERM received before it installs its own handler: there the run stops at
once, with nothing half written to lose. A rank that receives
a signal passes it to the launcher (``metalcore.training.launch.spawn``), which passes it to every
rank. The run then ends with one line saying what was kept (``last.ckpt``, see
``metalcore.training.callbacks.last_checkpoint``) and ``Terminated``: exit status 143 (SIGTERM) or
130 (Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from metalcore.core.errors import Terminated
from metalcore.training.callbacks.last_checkpoint import LastCheckpoint
from metalcore.training.checkpoint_io import RESUME_HELP
from metalcore.training.launch import LAUNCHER

log = logging.getLogger("metalcore.train")


class StopRequest(Callback):
    """The signals received, and the point where the run acts on them (see the module docstring)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._trainer: L.Trainer | None = None
        self.in_loop = False  # inside a fit, validate or test loop, which acts at its next batch end

    def handle(self, signum: int, frame: Any) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        first = not self.received
        self.received.append(signum)
        if not first:
            return
        launcher = os.environ.get(LAUNCHER)
        if launcher and int(launcher) == os.getppid():  # the other ranks learn it from the launcher
            os.kill(os.getppid(), signal.SIGTERM)
        trainer = self._trainer
        if not self.in_loop:  # no batch end to act at: stop here
            raise SIGTERMException
        if signum == signal.SIGINT and (trainer is None or trainer.is_global_zero):
            log.warning("Ctrl-C: stopping at the next safe point (press Ctrl-C again to stop at once)")
        if trainer is not None and trainer.world_size == 1:
            _stop_at_the_next_batch_end(trainer)

    def install(self, trainer: L.Trainer, in_loop: bool = False) -> None:
        self._trainer = trainer
        self.in_loop = in_loop
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGTERM, self.handle)

    # Lightning installs its SIGTERM handler as each fit, validate or test starts: replace it
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install(trainer, in_loop=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install(trainer, in_loop=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_loop = False

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self.install(trainer, in_loop=True)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install(trainer, in_loop=True)

    # under DDP: where every rank is at the same point
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._agree(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._agree(trainer)
        if trainer.state.fn != TrainerFn.FITTING:
            self.in_loop = False

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._agree(trainer)
        self.in_loop = False

    def _agree(self, trainer: L.Trainer) -> None:
        if trainer.world_size == 1 or not dist.is_initialized():
            return
        flag = torch.tensor([1.0 if self.received else 0.0], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            if not self.received:
                self.received.append(signal.SIGTERM)  # passed on by another rank
            _stop_at_the_next_batch_end(trainer)


def _stop_at_the_next_batch_end(trainer: L.Trainer) -> None:
    trainer._signal_connector.received_sigterm = True  # what Lightning's own SIGTERM handler sets


@contextmanager
def stopped_by_signal(trainer: L.Trainer) -> Iterator[None]:
    """Run fit, validate and test inside: a stop signal ends them as the module docstring says."""
    request = StopRequest()
    trainer.callbacks.append(request)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    request.install(trainer)
    try:
        yield
    except (SIGTERMException, KeyboardInterrupt) as stopped:
        forced = isinstance(stopped, KeyboardInterrupt)
        signum = request.received[0] if request.received else signal.SIGINT if forced else signal.SIGTERM
        if trainer.is_global_zero:
            log.warning("%s", stop_line(trainer, signum, forced, request.in_loop))
        raise Terminated(signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        trainer.callbacks.remove(request)
    if request.received:  # asked for during a DDP test, which went on to its end: the run is complete
        why = "Ctrl-C" if request.received[0] == signal.SIGINT else signal.Signals(request.received[0]).name
        if trainer.is_global_zero:
            log.warning("stopped (%s) as the test ended; the run is complete", why)
        raise Terminated(request.received[0])


def stop_line(trainer: L.Trainer, signum: int, forced: bool, in_loop: bool = True) -> str:
    """Where a run stopped, what it kept, and how to go on (``in_loop``: in a fit, validate or test loop)."""
    why = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    last = next((c.path for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    kept = None
    if last is not None and last.is_file():
        kept = f"{last} (step {torch.load(last, map_location='cpu', weights_only=True, mmap=True)['global_step']})"
    if trainer.state.fn != TrainerFn.FITTING:
        return (
            f"stopped ({why}) while {'testing' if trainer.testing else 'validating'}: training is complete; "
            "run the same command with ckpt_path=last to test again"
        )
    if kept is None:
        return f"training stopped ({why}) before its first checkpoint; nothing to resume: run the command again"
    if not in_loop:
        return f"training stopped ({why}) outside its epochs; {kept} is as it was; resume with {RESUME_HELP}"
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    where = f"in epoch {trainer.current_epoch + 1}/{total} at step {trainer.global_step}"  # from 1, as progress lines
    at = "at once; kept" if forced else f"{where}; saved"
    return f"training stopped ({why}) {at} {kept}; resume with {RESUME_HELP}"
