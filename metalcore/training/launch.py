"""One process per device for DDP, started the way torchrun starts them, from inside a Hydra job.

Lightning's own launcher for ``strategy=ddp`` re-runs the command line for every extra rank; under
Hydra's ``-m`` each copy replays the whole sweep (Lightning PR #18175, hydra #2070). ``ddp_spawn``
avoids that but runs ``fit`` and ``test`` in separate short-lived processes that send back only the
checkpoint path and the logged scalars: module attributes, the epoch count and the data split are
lost in the parent. So when nothing outside (torchrun, srun, another cluster launcher) started the
ranks, ``spawn`` starts them here: each gets ``LOCAL_RANK``, ``NODE_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``, runs the whole run (fit and test) and Lightning, seeing ``LOCAL_RANK``, starts
nothing itself. Rank 0 writes the outputs, exactly as under torchrun; the parent only waits.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.fabric.plugins.environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero_only
from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only

from metalcore.core.errors import Terminated, UserError
from metalcore.core.library_warnings import route_warnings_to_log
from metalcore.training.checkpoint_io import RESUME_HELP

LAUNCHER = "METALCORE_LAUNCHER_PID"  # tells a rank where to pass a stop signal on (metalcore.training.stops)
STOP_GRACE_S = 45  # after a stop signal, how long the ranks have to save and exit before they are killed


def launched_externally() -> bool:
    """Whether torchrun, srun (SLURM), LSF, MPI or a manual ``LOCAL_RANK`` already started the ranks."""
    return "LOCAL_RANK" in os.environ or any(
        env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    )


def strategy_name(strategy: Any) -> str:
    """Lightning's registry name (``ddp``, ``ddp_spawn``...) of a strategy given by name or as a config
    node building a ``DDPStrategy`` (as ``trainer=ddp`` does, to set its collective timeout)."""
    if not isinstance(strategy, Mapping):
        return str(strategy)
    target = str(strategy.get("_target_", ""))
    if target.rsplit(".", 1)[-1] != "DDPStrategy":
        return target
    start_method = strategy.get("start_method") or "popen"
    return "ddp" if start_method == "popen" else f"ddp_{start_method}"


def local_processes(strategy: Any, accelerator: str, devices: Any) -> int:
    """How many processes to start on this machine: ``devices`` for ``strategy=ddp``, else 1.

    Nothing is started when the ranks already exist; other strategies keep Lightning's launchers,
    except the spawning ones, refused before any training (they would lose the test results).
    """
    name = strategy_name(strategy)
    if name.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook")):
        raise UserError(
            f"trainer.strategy={name} runs fit and test in separate short-lived processes and loses "
            "the test results; use trainer.strategy=ddp (metalcore starts one process per device)"
        )
    if not (name == "ddp" or name.startswith("ddp_find_unused_parameters")) or launched_externally():
        return 1
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if isinstance(devices, Sequence) and not isinstance(devices, str):  # a list of device ids
        return len(devices)
    if str(devices) in ("auto", "-1") and accelerator in ("auto", "gpu", "cuda"):
        return max(torch.cuda.device_count(), 1)
    if str(devices).isdigit():
        return int(devices)
    return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(
    local_rank: int,
    processes: int,
    env: dict[str, str],
    fn: Callable[..., Any],
    args: tuple,
    logging_config: dict | None,
) -> None:
    """Inside a started process: set the variables Lightning reads, configure logging, run ``fn``."""
    os.environ.update(env, LOCAL_RANK=str(local_rank))
    rank = int(env["NODE_RANK"]) * processes + local_rank
    fabric_rank_zero_only.rank = utilities_rank_zero_only.rank = rank  # Lightning read it at import time
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores, as torchrun does
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    if logging_config and rank == 0:
        logging.config.dictConfig(logging_config)  # the same console and log file as the parent
    else:
        logging.basicConfig(level=logging.WARNING)
    route_warnings_to_log()  # a new process: the entry point's warning filters did not come along
    with collective_timeouts():
        fn(*args)


def spawn(fn: Callable[..., Any], args: tuple, processes: int, logging_config: dict | None = None) -> None:
    """Run ``fn(*args)`` in ``processes`` new processes (one per device) and wait for all of them.

    ``fn`` and ``args`` must pickle (a module-level function, a resolved config). ``logging_config``
    (a ``logging.config.dictConfig`` dict) is applied in rank 0, so its messages reach the run's log
    file once; the other ranks log warnings only. A :class:`UserError` raised by a rank is raised
    here with its message, so the entry point can print it as one line.
    """
    env = {
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(_free_port()),
        "NODE_RANK": os.environ.get("NODE_RANK", "0"),
        LAUNCHER: str(os.getpid()),
    }
    context = mp.start_processes(
        _rank_main, args=(processes, env, fn, args, logging_config), nprocs=processes, join=False, start_method="spawn"
    )
    with passed_on(context.processes) as stopping:
        try:
            # a rank that failed ends the others after a few seconds; a stop gives them time to save
            while not context.join(timeout=1, grace_period=STOP_GRACE_S if stopping else 5):
                pass
        except mp.ProcessRaisedException as err:
            if user_error := as_user_error(err):
                raise user_error from None
            if stop := as_stop(err):  # stopped as asked; rank 0 said where (metalcore.training.stops)
                raise Terminated(stopping[0] if stopping else stop) from None
            raise
        except mp.ProcessExitedException as err:
            how = f"signal {err.signal_name}" if err.signal_name else f"exit status {err.exit_code}"
            raise UserError(
                f"rank {err.error_index} (process {err.error_pid}) ended with {how}; the other ranks were stopped; "
                f"resume from the last checkpoint with {RESUME_HELP}"
            ) from None
    if stopping:
        raise Terminated(stopping[0])


@contextmanager
def passed_on(processes: list) -> Iterator[list[int]]:
    """While the ranks run: SIGTERM or Ctrl-C to this process is passed on to every rank (as SIGTERM,
    which asks each for the stop: see metalcore.training.stops); a rank passes its own signals here.

    Yields the signals received; ranks still alive ``STOP_GRACE_S`` after the first are killed, so a
    stop leaves no process behind even when a rank hangs.
    """
    stopping: list[int] = []
    deadline = threading.Timer(STOP_GRACE_S, _kill_left, (processes,))
    deadline.daemon = True

    def forward(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            deadline.start()
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        deadline.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _kill_left(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()


def as_user_error(err: mp.ProcessRaisedException) -> UserError | None:
    """The UserError a rank raised, from the traceback text the parent receives; None for anything else."""
    last = str(err).strip().splitlines()[-1]
    prefix = f"{UserError.__module__}.{UserError.__name__}: "
    return UserError(last[len(prefix) :]) if last.startswith(prefix) else None


def as_stop(err: mp.ProcessRaisedException) -> int | None:
    """The signal of the ``Terminated`` a rank raised (it stopped as asked), from the traceback text, or None."""
    last = str(err).strip().splitlines()[-1]
    prefix = f"{Terminated.__module__}.{Terminated.__name__}: "
    return signal.Signals[last[len(prefix) :]] if last.startswith(prefix) else None


# gloo's words when a collective (or the first meeting of the ranks) passes the process group's timeout
_TIMED_OUT = re.compile(r"Timed out (?:waiting (?P<ms>\d+)ms|after (?P<s>\d+) seconds)")


@contextmanager
def collective_timeouts() -> Iterator[None]:
    """A collective that passed ``trainer.strategy.timeout`` becomes one line: which rank waited how
    long, in which collective called from which hook, and the key that sets the limit.

    Without a limit a rank whose peers never join waits forever, silently; gloo raises a long
    ``RuntimeError`` instead, which this turns into a :class:`UserError`.
    """
    try:
        yield
    except RuntimeError as err:
        found = _TIMED_OUT.search(str(err))
        if not found:
            raise
        seconds = int(found["ms"]) / 1000 if found["ms"] else int(found["s"])
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else os.environ.get("RANK", "0")
        collective, hook = _where(err.__traceback__)
        raise UserError(
            f"rank {rank} waited {seconds:g} s {collective}{hook} for the other ranks and gave up: a rank stopped "
            "making progress, or the ranks ran their collectives in a different order. The limit is "
            "trainer.strategy.timeout (e.g. trainer.strategy.timeout.seconds=1800 when a rank can lag that long)"
        ) from None


def _where(tb: TracebackType | None) -> tuple[str, str]:
    """``("in all_reduce", " (from RichProgressBar.on_train_epoch_end)")``: the innermost
    torch.distributed call and Lightning hook on the stack, each empty when absent."""
    collective = hook = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        name = getattr(code, "co_qualname", code.co_name)
        if code.co_filename.endswith("distributed_c10d.py"):
            collective = f"in {code.co_name}"
        elif name.rsplit(".", 1)[-1].startswith("on_") or name.endswith("_step"):
            hook = f" (from {name})"
        tb = tb.tb_next
    return collective or "at a collective", hook
