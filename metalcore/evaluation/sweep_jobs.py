"""A sweep's jobs read from disk: each job's overrides, scores, intervals and status.

Every job folder Hydra made under the sweep (``<job>/.hydra/overrides.yaml``) is one row's worth of
evidence: its overrides say what it tried, its ``metrics.json`` what it scored. Hydra keeps a sweep
going past a failed job and raises only at the end (hydra #2551), so a job without metrics.json is
kept, never dropped: ``failed`` when its log records an error, ``unfinished`` when it does not
(still running, or killed); jobs the sweep never reached are counted from ``multirun.yaml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metalcore.core.sweep_config import sweep_size
from metalcore.uncertainty.bootstrap import SUFFIX

ERROR_LINE = re.compile(r"\[(ERROR|CRITICAL)\] - (?P<message>.*)")


def flatten(metrics: dict) -> dict[str, float]:
    """metrics.json's numbers: ``test.<level>.<name>``, ``val/<name>``, ``best/<monitored>``, ``epochs``,
    ``time.<name>`` (``time.wall_s``, ``time.epoch_s``, ...)."""
    flat: dict[str, float] = {}
    for level, scores in (metrics.get("test") or {}).items():
        for name, value in scores.items():
            if isinstance(value, (int, float)):
                flat[f"test.{level}.{name}"] = float(value)
    for name, value in (metrics.get("val") or {}).items():
        flat[name] = float(value)
    if metrics.get("monitor"):
        flat[f"best/{metrics['monitor']['metric']}"] = float(metrics["monitor"]["best"])
    if isinstance(metrics.get("epochs"), int):
        flat["epochs"] = float(metrics["epochs"])
    for name, value in (metrics.get("timing") or {}).items():
        if isinstance(value, (int, float)):
            flat[f"time.{name}"] = float(value)
    return flat


def intervals(metrics: dict) -> dict[str, list[float]]:
    """metrics.json's 95 % intervals, keyed like ``flatten``'s values: ``test.<level>.<name>``."""
    return {
        f"test.{level}.{name[: -len(SUFFIX)]}": value
        for level, scores in (metrics.get("test") or {}).items()
        for name, value in scores.items()
        if name.endswith(SUFFIX) and isinstance(value, list)
    }


@dataclass
class Job:
    """One Hydra job folder: what it overrode, whether it finished, what it scored."""

    folder: Path
    overrides: dict[str, str]
    status: str  # ok | failed | unfinished
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    intervals: dict[str, list[float]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # the software it ran under, as recorded


def parse_overrides(lines: Sequence[str]) -> dict[str, str]:
    """``["model=cnn", "+x=1"]`` -> ``{"model": "cnn", "+x": "1"}`` (a ``~key`` deletion maps to ``""``)."""
    pairs = (str(line).split("=", 1) for line in lines)
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def last_error(folder: Path) -> str | None:
    """The message of the last ERROR record in the job's log files, or None when there is none."""
    message = None
    for log in sorted(folder.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if match := ERROR_LINE.search(line):
                message = match["message"].strip()
    return message


def read_job(folder: Path) -> Job:
    overrides = parse_overrides(yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or [])
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
            if metrics.get("test"):
                return Job(
                    folder,
                    overrides,
                    "ok",
                    flatten(metrics),
                    intervals=intervals(metrics),
                    environment=metrics.get("environment") or {},
                )
            reason = "metrics.json holds no test scores"
        except (OSError, ValueError, AttributeError) as err:
            reason = f"metrics.json unreadable: {err}"
        return Job(folder, overrides, "failed", reason=reason)
    if error := last_error(folder):
        return Job(folder, overrides, "failed", reason=error)
    return Job(folder, overrides, "unfinished", reason="no metrics.json and no error logged (running, or killed)")


def find_jobs(root: Path) -> list[Job]:
    """Every job folder under ``root`` (any depth, so custom ``hydra.sweep.subdir`` layouts work)."""
    folders = {p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == ".hydra"}
    return [read_job(f) for f in sorted(folders, key=_natural)]


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def expected_jobs(root: Path, jobs: Sequence[Job]) -> int | None:
    """How many jobs the sweep asked for; None when that cannot be told.

    The basic sweeper's grid is expanded from ``multirun.yaml``; Optuna (which writes no
    multirun.yaml) asked for ``n_trials``, as any trial's ``.hydra/hydra.yaml`` records.
    """
    sources = [root / "multirun.yaml", *(j.folder / ".hydra" / "hydra.yaml" for j in jobs[:1])]
    try:
        source = next(p for p in sources if p.is_file())
        hydra = yaml.safe_load(source.read_text())["hydra"]
        optuna = str(hydra["sweeper"].get("_target_", "")).endswith("OptunaSweeper")
    except Exception:  # nothing to read: the count is unknown
        return None
    # a job's own hydra.yaml holds its values, not the basic sweeper's lists
    return sweep_size(hydra) if optuna or source.name == "multirun.yaml" else None
