"""The artist effect: a score held out by track minus the same score held out by artist, per configuration.

``experiment=artist_effect`` runs every configuration with both splits and the same seeds; the gap
per seed is paired (the two jobs share initialisation and crops), and its 95 % interval is Student's
t over the seeds, which are few.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metalcore.core.errors import UserError
from metalcore.evaluation.sweep import Sweep, mean_std
from metalcore.evaluation.sweep_tables import short_value

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
        cells = [short_value(row.values[k]) for k in keys] + [str(len(own))]
        cells += [mean_std(*t_interval([side[s] for s in own])[:1], math.nan) for side in (row.seen, row.unseen)]
        cells += [_interval(*t_interval(list(own.values()))[:2])]
        cells += ["(reference)" if row is rows[0] else _interval(*t_interval(change)[:2])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
