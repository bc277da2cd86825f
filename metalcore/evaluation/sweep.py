"""A sweep as configurations: its jobs grouped by the overrides they differ in, seeds pooled, sorted.

Jobs that share all overrides but ``seed`` are one configuration, reported as mean +- std over the
seeds it finished (the folds of a cross-validation pool the same way), sorted by the chosen metric.
The jobs come from ``metalcore.evaluation.sweep_jobs``; the tables and plot from
``metalcore.evaluation.sweep_tables``; the artist effect from ``metalcore.evaluation.artist_gap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalcore.core.errors import UserError
from metalcore.evaluation.sweep_jobs import Job, find_jobs
from metalcore.scoring.metrics import canonical, higher_is_better
from metalcore.uncertainty.bootstrap import formatted

DEFAULT_METRIC = "test.track.acc"
SUMMARY_METRICS = ("test.track.acc", "test.track.f1", "test.clip.acc", "test.clip.f1")
COST_METRICS = ("time.wall_s", "time.epoch_s")  # what a configuration costs: the job's seconds, per epoch
GROUPED_OUT = ("seed", "data.split.fold")  # repeats of one configuration: seeds, and the folds of a cross-validation


def mean_std(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass
class Group:
    """Jobs with the same values for ``keys``: one configuration, its seeds pooled."""

    values: dict[str, str]
    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "ok"]

    def stats(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, n) over the finished jobs that have ``metric``; NaN when none does."""
        values = np.array([j.metrics[metric] for j in self.finished if metric in j.metrics], dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            return math.nan, math.nan, 0
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan, len(values)

    def cell(self, metric: str) -> str:
        """mean ± std over seeds; a single job's value with its 95 % interval when metrics.json has one."""
        mean, std, n = self.stats(metric)
        if n == 1 and len(self.finished) == 1 and metric in self.finished[0].intervals:
            return formatted(mean, self.finished[0].intervals[metric])
        return mean_std(mean, std, 1 if metric.startswith("time.") else 4)

    def status(self) -> str:
        counts = {s: sum(j.status == s for j in self.jobs) for s in ("ok", "failed", "unfinished")}
        if counts["ok"] == len(self.jobs):
            return "ok"
        return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value is not the same in every job, in first-seen order."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def group(jobs: Sequence[Job], keys: Sequence[str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for job in jobs:
        values = {k: job.overrides.get(k, "") for k in keys}
        groups.setdefault(tuple(values.values()), Group(values, [])).jobs.append(job)
    return list(groups.values())


def sort_groups(groups: list[Group], metric: str) -> list[Group]:
    """Best first by the metric's mean; configurations without a value last."""
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(g: Group) -> tuple[bool, float]:
        mean = g.stats(metric)[0]
        return (math.isnan(mean), sign * mean if not math.isnan(mean) else 0.0)

    return sorted(groups, key=key)


@dataclass
class Sweep:
    """A sweep read from disk: its jobs, the overrides that vary, and the jobs grouped and sorted."""

    root: Path
    jobs: list[Job]
    keys: list[str]  # the columns that tell configurations apart
    groups: list[Group]
    metric: str

    @property
    def columns(self) -> list[str]:
        costs = [m for m in COST_METRICS if m != self.metric and any(m in j.metrics for j in self.jobs)]
        return [self.metric, *(m for m in SUMMARY_METRICS if m != self.metric), *costs]


def load(root: Path, metric: str = DEFAULT_METRIC, per_job: bool = False) -> Sweep:
    """Read every job under ``root``; group by the swept overrides (all but ``seed`` unless ``per_job``)."""
    jobs = find_jobs(root)
    if not jobs:
        raise UserError(f"{root}: no Hydra job folders (<job>/.hydra/overrides.yaml) found")
    metric = canonical(metric)
    known = set().union(*(j.metrics for j in jobs))
    if metric not in known and any(j.status == "ok" for j in jobs):
        raise UserError(f"--metric {metric} is not in any metrics.json; try one of: {', '.join(sorted(known))}")
    keys = [k for k in swept_keys(jobs) if per_job or k not in GROUPED_OUT]
    return Sweep(root, jobs, keys, sort_groups(group(jobs, keys), metric), metric)
