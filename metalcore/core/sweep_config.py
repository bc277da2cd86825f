"""What a Hydra sweep asked for, read from its saved config: how many jobs, and which keys it sweeps.

Shared by the sweep's progress lines while it runs and by ``metalcore.report`` afterwards; Hydra's
override parser is imported only when a count is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _sweep_overrides(hydra: Mapping[str, Any]) -> list:
    """The basic sweeper's ``params`` and the command line's overrides (which win for the same key), parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = {
        **{k: f"{k}={v}" for k, v in (hydra["sweeper"].get("params") or {}).items()},
        **{line.split("=", 1)[0]: line for line in hydra["overrides"]["task"]},
    }
    return OverridesParser.create().parse_overrides(list(lines.values()))


def sweep_size(hydra: Mapping[str, Any]) -> int | None:
    """How many jobs a sweep asks for, from its ``hydra`` config; None when that cannot be told.

    Optuna runs ``n_trials``; the basic sweeper every combination of its ``params`` and the sweep
    overrides of the command line. Read it from the multirun's own config: a job's config holds its
    own values instead of the sweep's lists.
    """
    try:
        target = str(hydra["sweeper"].get("_target_", ""))
        if target.endswith("OptunaSweeper"):
            return int(hydra["sweeper"]["n_trials"])
        if not target.endswith("BasicSweeper"):
            return None
        total = 1
        for override in _sweep_overrides(hydra):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # another sweeper, a glob() sweep, a missing key: the count is unknown
        return None


def swept_keys(hydra: Mapping[str, Any]) -> list[str]:
    """The keys whose value changes from job to job (what a job line shows of its overrides)."""
    try:
        if str(hydra["sweeper"].get("_target_", "")).endswith("OptunaSweeper"):
            return list(hydra["sweeper"].get("params") or {})
        return [o.get_key_element() for o in _sweep_overrides(hydra) if o.is_sweep_override()]
    except Exception:
        return []
