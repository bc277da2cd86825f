"""The one exception type a user can act on, and the one way every command ends on it.

``UserError`` is raised for anything a user can fix by changing a config key, an option or a file:
an impossible setting, an empty data folder, a split that would leave a class out. The message
names the key, option or file and the reason, and says what to do. Library code only raises;
``command``, around the body of every command (argparse and Hydra alike), turns the error into a
single line and exit status 2, the status argparse gives its own usage errors.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_STATUS = 2
SIGTERM_STATUS = 143  # 128 + SIGTERM: what a scheduler expects of a job it terminated


class UserError(ValueError):
    """A problem with the user's configuration, options or data, explained in one line."""


class Terminated(Exception):
    """Stopped by a signal after saving where to resume; the command exits with 128 + the signal's
    number: 143 for SIGTERM (what a scheduler expects of a job it terminated), 130 for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = 128 + int(signum)


INTERRUPT_STATUS = 130  # 128 + SIGINT: what a shell reports for Ctrl-C


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM outside training, raised where the work was so that it can say what it kept.

    A BaseException, as KeyboardInterrupt is: ``except Exception`` in library code lets it pass.
    """

    def __init__(self, why: str, status: int, kept: str = "") -> None:
        super().__init__(why)
        self.why, self.status, self.kept = why, status, kept

    @classmethod
    def of(cls, stop: BaseException, kept: str) -> Interrupted:
        """``stop`` (a KeyboardInterrupt or an Interrupted) with what was kept."""
        if isinstance(stop, Interrupted):
            return cls(stop.why, stop.status, kept)
        return cls("Ctrl-C", INTERRUPT_STATUS, kept)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block SIGTERM raises ``Interrupted`` (status 143) where the work is, as Ctrl-C raises
    KeyboardInterrupt, instead of ending the process without a word. Training replaces it while its
    loops run (``metalcore.training.stops``); a thread other than the main one cannot receive signals."""

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise Interrupted("SIGTERM", SIGTERM_STATUS)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def command(log: logging.Logger | None = None, sweep: bool = False) -> Iterator[None]:
    """Run a command's body (``with command():`` or ``@command()``) so that it fails in one line.

    SIGTERM and Ctrl-C end it with one line saying what was kept (see ``interruptible``) and status
    143 or 130. A UserError becomes ``error: <message>`` on stderr, or one logged line with ``log`` (a Hydra
    job's log file, which ``metalcore.report`` reads), then exit status 2. In a sweep the error is
    re-raised after the line instead, so that Hydra marks the job failed and runs the next one
    (hydra #2551); any other failure of a sweep's job is logged in one line before it propagates.
    """
    keep_undecodable_names()
    try:
        with interruptible():
            yield
    except Terminated as stop:
        raise SystemExit(stop.status) from None
    except (Interrupted, KeyboardInterrupt) as stop:
        stop = stop if isinstance(stop, Interrupted) else Interrupted.of(stop, "")
        line = f"stopped ({stop.why}){f': {stop.kept}' if stop.kept else ''}"
        if log is None:
            print(line, file=sys.stderr)
        else:
            log.warning("%s", line)
        raise SystemExit(stop.status) from None
    except UserError as err:
        if log is None:
            print(f"error: {err}", file=sys.stderr)
        else:
            log.error("%s", err)
        if sweep:
            raise
        raise SystemExit(USER_ERROR_STATUS) from None
    except Exception as err:
        if sweep and log is not None:
            log.exception("job failed: %s: %s", type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        raise


def keep_undecodable_names() -> None:
    """Let stdout and stderr print file names that are not valid UTF-8 as their original bytes.

    Every command starts with it (through ``command``) before it prints or logs a path: with the
    default strict errors one such name ends the command with ``UnicodeEncodeError`` after all its work.
    """
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
