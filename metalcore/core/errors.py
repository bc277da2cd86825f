"""The one exception type a user can act on, and the one way every command ends on it.

``UserError`` is raised for anything a user can fix by changing a config key, an option or a file:
an impossible setting, an empty data folder, a split that would leave a class out. The message
names the key, option or file and the reason, and says what to do. Library code only raises;
``command``, around the body of every command (argparse and Hydra alike), turns the error into a
single line and exit status 2, the status argparse gives its own usage errors.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_STATUS = 2
SIGTERM_STATUS = 143  # 128 + SIGTERM: what a scheduler expects of a job it terminated


class UserError(ValueError):
    """A problem with the user's configuration, options or data, explained in one line."""


class Terminated(Exception):
    """Training stopped by SIGTERM after saving where to resume; the command exits with status 143."""


@contextmanager
def command(log: logging.Logger | None = None, sweep: bool = False) -> Iterator[None]:
    """Run a command's body (``with command():`` or ``@command()``) so that it fails in one line.

    A UserError becomes ``error: <message>`` on stderr, or one logged line with ``log`` (a Hydra
    job's log file, which ``metalcore.report`` reads), then exit status 2. In a sweep the error is
    re-raised after the line instead, so that Hydra marks the job failed and runs the next one
    (hydra #2551); any other failure of a sweep's job is logged in one line before it propagates.
    """
    keep_undecodable_names()
    try:
        yield
    except Terminated:
        raise SystemExit(SIGTERM_STATUS) from None
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
