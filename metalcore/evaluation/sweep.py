"""A sweep read from disk: jobs, their overrides and scores, grouped by configuration, as tables and plots.

Every job folder Hydra made under the sweep (``<job>/.hydra/overrides.yaml``) is one row's worth of
evidence: its overrides say what it tried, its ``metrics.json`` what it scored. Jobs that share all
overrides but ``seed`` are one configuration, reported as mean +- std over the seeds it finished
(the folds of a cross-validation pool the same way), sorted by the chosen metric. Hydra keeps a
sweep going past a failed job and raises only at the end (hydra #2551), so a job without
metrics.json is listed, never dropped: ``failed`` when its log records an error, ``unfinished`` when
it does not (still running, or killed); jobs the sweep never reached are counted from
``multirun.yaml``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metalcore.core import files
from metalcore.core.environment import spread
from metalcore.core.errors import UserError
from metalcore.core.sweep_config import sweep_size
from metalcore.scoring.metrics import canonical, higher_is_better
from metalcore.uncertainty.bootstrap import SUFFIX, formatted

DEFAULT_METRIC = "test.track.acc"
SUMMARY_METRICS = ("test.track.acc", "test.track.f1", "test.clip.acc", "test.clip.f1")
COST_METRICS = ("time.wall_s", "time.epoch_s")  # what a configuration costs: the job's seconds, per epoch
GROUPED_OUT = ("seed", "data.split.fold")  # repeats of one configuration: seeds, and the folds of a cross-validation
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


# -- reading a sweep -----------------------------------------------------------------------------
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


# -- grouping ------------------------------------------------------------------------------------
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
        return _cell(mean, std, 1 if metric.startswith("time.") else 4)

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


# -- output --------------------------------------------------------------------------------------
def _short(value: str) -> str:
    """An override value for the eye: long floats (Optuna's) to 4 significant digits."""
    if not value:
        return "(default)"
    try:
        return f"{float(value):.4g}" if "." in value and len(value) > 8 else value
    except ValueError:
        return value


def _cell(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(groups: Sequence[Group], keys: Sequence[str], metrics: Sequence[str]) -> str:
    header = [*keys, "n", *metrics, "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for g in groups:
        cells = [_short(g.values[k]) for k in keys] + [str(len(g.finished))]
        cells += [g.cell(m) for m in metrics] + [g.status()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, groups: Sequence[Group], keys: Sequence[str], metrics: Sequence[str]) -> None:
    """The grouped table with numbers kept numeric: ``<metric>_mean``, ``<metric>_std`` and ``n``."""
    header = [*keys, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), "status", "jobs"]
    rows = []
    for g in groups:
        numbers = [x for m in metrics for x in g.stats(m)[:2]]
        rows.append(
            [
                *(g.values[k] for k in keys),
                len(g.finished),
                *("" if math.isnan(x) else f"{x:.6g}" for x in numbers),
                g.status(),
                " ".join(j.folder.name for j in g.jobs),
            ]
        )
    files.write_csv(path, header, rows)


def plot(path: Path, jobs: Sequence[Job], keys: Sequence[str], metric: str) -> None:
    """One panel per swept parameter: the metric's mean +- std over every finished job at each value."""
    from matplotlib.figure import Figure

    finished = [j for j in jobs if j.status == "ok" and np.isfinite(j.metrics.get(metric, math.nan))]
    fig = Figure(figsize=(3.6 * len(keys), 3.2))
    axes = fig.subplots(1, len(keys), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], keys):
        values = sorted({j.overrides.get(key, "") for j in jobs}, key=_as_number_or_text)
        numeric = all(isinstance(_as_number_or_text(v)[1], float) for v in values)
        xs = [_as_number_or_text(v)[1] if numeric else i for i, v in enumerate(values)]
        scores = [[j.metrics[metric] for j in finished if j.overrides.get(key, "") == v] for v in values]
        for x, ys in zip(xs, scores):
            ax.plot([x] * len(ys), ys, "o", color="0.7", markersize=3)
        means = [np.mean(ys) if ys else np.nan for ys in scores]
        stds = [np.std(ys, ddof=1) if len(ys) > 1 else 0.0 for ys in scores]
        ax.errorbar(xs, means, yerr=stds, marker="s", capsize=4, color="C0")
        if numeric:
            ax.set_xticks(xs, values)
        else:
            ax.set_xticks(xs, [v or "(default)" for v in values], rotation=30, ha="right")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    fig.suptitle(f"{metric}: mean ± std over the other settings and seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _as_number_or_text(value: str) -> tuple[int, float | str]:
    try:
        return 0, float(value)
    except ValueError:
        return 1, value


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


def render(sweep: Sweep) -> str:
    """The markdown report: the table, then every job without results, then what never started."""
    order = "highest" if higher_is_better(sweep.metric) else "lowest"
    lines = [
        f"# {sweep.root}",
        "",
        f"{len(sweep.jobs)} jobs, {len(sweep.groups)} configurations; mean ± std over seeds (and folds), "
        f"or one job's value [95 % interval, tracks resampled]; n = finished jobs; sorted by {sweep.metric}, "
        f"{order} first.",
        "",
        markdown(sweep.groups, sweep.keys, sweep.columns),
    ]
    incomplete = [j for j in sweep.jobs if j.status != "ok"]
    if incomplete:
        swept = set(swept_keys(sweep.jobs))
        lines += ["", "## Jobs without results", ""]
        lines += [
            f"- {j.folder.relative_to(sweep.root)} ({j.status}): "
            f"{' '.join(f'{k}={v}' for k, v in j.overrides.items() if k in swept) or 'no swept override'}"
            f" - {j.reason}"
            for j in incomplete
        ]
    differences = spread({str(j.folder.relative_to(sweep.root)): j.environment for j in sweep.jobs if j.environment})
    if differences:
        lines += ["", "## Jobs ran under different environments (their numbers may not be comparable)", ""]
        lines += [f"- {line}" for line in differences]
    expected = expected_jobs(sweep.root, sweep.jobs)
    if expected is not None and expected > len(sweep.jobs):
        lines += ["", f"{expected - len(sweep.jobs)} of the {expected} jobs the sweep asked for never started."]
    if (sweep.root / "optimization_results.yaml").is_file():
        best = yaml.safe_load((sweep.root / "optimization_results.yaml").read_text())
        lines += ["", f"Optuna's best: {best.get('best_value')} with {best.get('best_params')}."]
    return "\n".join(lines)


# -- the artist effect: a score held out by track minus the same held out by artist ---------------
# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
_T975 += (2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, half-width of its 95 % interval, n) over seeds: Student's t, as seeds are few; NaN width for n < 2."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not len(x):
        return math.nan, math.nan, 0
    if len(x) < 2:
        return float(x.mean()), math.nan, 1
    t = _T975[len(x) - 2] if len(x) - 1 <= len(_T975) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(len(x))), len(x)


@dataclass
class Gap:
    """One configuration's scores on seen and unseen groups (e.g. held out by track, by artist), per seed."""

    values: dict[str, str]
    seen: dict[str, float]  # seed -> score
    unseen: dict[str, float]

    @property
    def gaps(self) -> dict[str, float]:
        """seen - unseen for every seed that finished both (the two jobs share initialisation and crops)."""
        return {s: self.seen[s] - self.unseen[s] for s in self.seen if s in self.unseen}


def gaps(sweep: Sweep, by: str, seen: str, unseen: str) -> list[Gap]:
    """The finished jobs of ``sweep`` paired on ``by`` (``seen`` against ``unseen``), one row per other setting."""
    keys = [k for k in sweep.keys if k != by]
    rows: dict[tuple, Gap] = {}
    for job in sweep.jobs:
        value = job.overrides.get(by)
        if job.status != "ok" or value not in (seen, unseen) or sweep.metric not in job.metrics:
            continue
        values = {k: job.overrides.get(k, "") for k in keys}
        row = rows.setdefault(tuple(values.values()), Gap(values, {}, {}))
        (row.seen if value == seen else row.unseen)[job.overrides.get("seed", "")] = job.metrics[sweep.metric]
    return list(rows.values())


def _interval(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:+.3f}" if math.isnan(half) else f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def render_gaps(sweep: Sweep, by: str, seen: str, unseen: str) -> str:
    """A markdown table of each configuration's gap, with 95 % intervals over seeds, and its change from
    the first configuration (the sweep's first job's), paired by seed."""
    rows = gaps(sweep, by, seen, unseen)
    if not rows:
        raise UserError(f"--gap {by}={seen},{unseen}: no finished jobs with {by}={seen} or {by}={unseen}")
    keys = [k for k in rows[0].values if k != "seed"]
    header = [*keys, "seeds", f"{by}={seen}", f"{by}={unseen}", "gap (95 % CI)", "gap change vs first row (95 % CI)"]
    lines = [
        f"## Gap: {sweep.metric} with {by}={seen} minus with {by}={unseen}",
        "",
        "Means over the seeds that finished both splits; intervals are Student's t over the per-seed gaps (and, "
        "in the last column, over the per-seed differences from the first row's gaps); an interval that "
        "excludes 0 is a change larger than the spread between seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    base = rows[0].gaps
    for row in rows:
        own = row.gaps
        change = [own[s] - base[s] for s in own if s in base]
        cells = [_short(row.values[k]) for k in keys] + [str(len(own))]
        cells += [_cell(*t_interval([side[s] for s in own])[:1], math.nan) for side in (row.seen, row.unseen)]
        cells += [_interval(*t_interval(list(own.values()))[:2])]
        cells += ["(reference)" if row is rows[0] else _interval(*t_interval(change)[:2])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
