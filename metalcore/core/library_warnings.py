"""Warnings in the run's log: library deprecations once per run, every warning one line beside metalcore's own.

A deprecation raised inside torch or Lightning tells a user nothing they can act on, yet Python
prints it on stderr, outside ``train.log``, as two lines, once per calling line (again in every job
of a sweep run in one process). Routed through ``logging`` instead, a warning becomes one record in
the same stream and file as metalcore's lines, in order, and a deprecation is shown once per message.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def one_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """``FutureWarning: <message> (torch/utils/_pytree.py:21)``: the message first, where it came from after."""
    text = " ".join(str(message).split())
    where = "/".join(Path(filename).parts[-3:])
    return f"{category.__name__}: {text} ({where}:{lineno})"


def route_warnings_to_log() -> None:
    """Send warnings to the ``py.warnings`` logger as one line each; deprecations from libraries once per message.

    A user who chose filters (``python -W ...`` or ``PYTHONWARNINGS``) keeps them. metalcore's own
    warnings keep Python's default (once per place that raises them).
    """
    if not sys.warnoptions:
        for category in DEPRECATIONS:
            warnings.filterwarnings("once", category=category)
        warnings.filterwarnings("once", message=r".*\bdeprecat")  # "... is deprecated" raised as a UserWarning
        warnings.filterwarnings("default", module=r"metalcore\b")
    warnings.formatwarning = one_line  # also what logging.captureWarnings formats with
    logging.captureWarnings(True)
