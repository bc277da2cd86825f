"""A sweep for the eye and for a spreadsheet: the markdown report, the CSV table, the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from metalcore.core import files
from metalcore.core.environment import spread
from metalcore.evaluation.sweep import Group, Sweep, swept_keys
from metalcore.evaluation.sweep_jobs import Job, expected_jobs
from metalcore.scoring.metrics import higher_is_better


def short_value(value: str) -> str:
    """An override value for the eye: long floats (Optuna's) to 4 significant digits."""
    if not value:
        return "(default)"
    try:
        return f"{float(value):.4g}" if "." in value and len(value) > 8 else value
    except ValueError:
        return value


def markdown(groups: Sequence[Group], keys: Sequence[str], metrics: Sequence[str]) -> str:
    header = [*keys, "n", *metrics, "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for g in groups:
        cells = [short_value(g.values[k]) for k in keys] + [str(len(g.finished))]
        cells += [g.cell(m) for m in metrics] + [g.status()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_table(path: Path, groups: Sequence[Group], keys: Sequence[str], metrics: Sequence[str]) -> None:
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
