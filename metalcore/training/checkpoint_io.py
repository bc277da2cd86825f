"""Checkpoints written atomically, and a full disk in the run folder as one line saying what was kept.

Lightning writes a checkpoint by opening its final name for writing: a disk that fills up midway
leaves a truncated ``epochNNN.ckpt`` or a 0-byte ``last.ckpt`` in place of the one before, and the
run ends in a traceback. ``AtomicCheckpointIO`` writes to a temporary file beside the target and
renames it into place only once it is complete (``metalcore.core.files.atomic_file``), so the
previous checkpoint stays whole; ``stopped_when_full`` turns the ``ENOSPC`` that ends the run into
one line naming the checkpoints that are intact and how to resume from them.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file

FULL = (errno.ENOSPC, errno.EDQUOT)
RESUME_HELP = "python -m metalcore.train hydra.run.dir=<run folder> ckpt_path=last, with the run's overrides"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with each file replaced only once its new content is on disk.

    The checkpoint is serialised in memory first (as Lightning does): torch's writer would turn a
    failed write into a RuntimeError that no longer says the disk was full.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_file(Path(path)) as f:
            f.write(buffer.getbuffer())


def disk_full(exception: BaseException) -> bool:
    """Whether ``exception`` (or the error it was raised from) is a write refused by a full disk or quota."""
    while exception is not None:
        if isinstance(exception, OSError) and exception.errno in FULL:
            return True
        exception = exception.__cause__ or exception.__context__
    return False


def kept(folder: Path) -> str:
    """``last.ckpt (step 24), epoch001.ckpt (step 16)``: the whole checkpoints in ``folder``."""
    found = []
    for path in sorted(Path(folder).glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", p.name)):
        try:
            step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
        except Exception:  # not whole: not something to resume from
            continue
        found.append(f"{path.name} (step {step})")
    return ", ".join(found) or "none"


@contextmanager
def stopped_when_full(output_dir: Path) -> Iterator[None]:
    """A full disk while the run writes its folder: UserError naming the intact checkpoints."""
    try:
        yield
    except Exception as err:
        if not disk_full(err):
            raise
        checkpoints = Path(output_dir) / "checkpoints"
        raise UserError(
            f"{output_dir}: disk full ({_filename(err)}); the checkpoints in {checkpoints} are whole: "
            f"{kept(checkpoints)}; free space, then resume with {RESUME_HELP}"
        ) from None


def _filename(err: BaseException) -> str:
    while err is not None:
        if isinstance(err, OSError) and err.errno in FULL:
            return f"writing {Path(err.filename).name}" if err.filename else "No space left on device"
        err = err.__cause__ or err.__context__
    return ""
