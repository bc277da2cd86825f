"""Whether this process can start others, and how: a job of a joblib sweep cannot spawn.

``hydra/launcher=joblib`` runs each job in a worker of joblib's loky pool, whose start method
("loky") multiprocessing hands to every child it spawns; the child cannot resolve it and dies before
its first task (``cannot find context for 'loky'``). Such a job decodes in its own process (the
sweep's jobs already run side by side) and forks its DataLoader workers, as Linux does by default.
"""

from __future__ import annotations

from multiprocessing import get_all_start_methods, get_context, get_start_method
from multiprocessing.context import BaseContext


def can_spawn() -> bool:
    """Whether a child started by multiprocessing (any context but fork) can run here."""
    return get_start_method(allow_none=True) in (None, *get_all_start_methods())


def loader_workers(workers: int) -> tuple[int, BaseContext | None]:
    """DataLoader ``num_workers`` and ``multiprocessing_context`` that work in this process."""
    if workers == 0 or can_spawn():
        return workers, None
    if "fork" in get_all_start_methods():
        return workers, get_context("fork")
    return 0, None
