"""``evaluate --perturb``: the test tracks scored again under each perturbation, in one table and a plot.

Each row holds a metric with its 95 % interval (bootstrap over tracks) and its drop from the clean
score, so a fall of 0.02 with intervals 0.2 wide reads as what it is: no evidence of harm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metalcore.core.files import write_csv
from metalcore.evaluation.perturb import PERTURBATIONS, on_pcm
from metalcore.evaluation.score import scored
from metalcore.evaluation.tracks import predicted
from metalcore.evaluation.write import save_figure
from metalcore.inference.checkpoint import Classifier

COLUMNS = (("track", "acc"), ("track", "f1"), ("clip", "acc"))


def row(name: str, scores: dict, clean: dict, tracks: int) -> dict:
    """One table row: each metric, its interval and its drop from ``clean`` (positive = worse)."""
    out: dict = {"perturbation": name, "tracks": tracks}
    for level, metric in COLUMNS:
        key = f"{level}_{metric}"
        low, high = scores[level].get(f"{metric}_ci95") or (np.nan, np.nan)
        out.update(
            {
                key: scores[level][metric],
                f"{key}_low": low,
                f"{key}_high": high,
                f"{key}_drop": clean[level][metric] - scores[level][metric],
            }
        )
    return out


def robustness(
    classifier: Classifier,
    tracks: list[tuple[Path, str]],
    names: list[str],
    clean: dict,
    output_dir: Path,
    hop_seconds: float | None = None,
    batch_size: int = 32,
) -> list[dict]:
    """Score ``tracks`` under each named perturbation; write robustness.csv and robustness.png."""
    rows = [row("clean", clean, clean, clean["counts"]["tracks"])]
    for name in names:
        transform = on_pcm(PERTURBATIONS[name], classifier.sample_rate)
        _, done, _ = predicted(classifier, tracks, hop_seconds, batch_size, transform=transform)
        rows.append(row(name, scored(done, len(classifier.classes)), clean, len(done)))
    header = list(rows[0])
    write_csv(
        output_dir / "robustness.csv",
        header,
        [[f"{r[k]:.6g}" if isinstance(r[k], float) else r[k] for k in header] for r in rows],
    )
    save_figure(figure(rows), output_dir / "robustness.png")
    return rows


def figure(rows: list[dict]):
    """Track accuracy with its interval under each perturbation; the clean score as a line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0 + 0.55 * len(rows), 3.6))
    ax = fig.subplots()
    xs = np.arange(len(rows))
    values = np.array([r["track_acc"] for r in rows])
    errors = np.array([[v - r["track_acc_low"], r["track_acc_high"] - v] for v, r in zip(values, rows)]).T
    ax.errorbar(xs, values, yerr=np.nan_to_num(errors), fmt="o", capsize=4)
    ax.axhline(rows[0]["track_acc"], color="0.6", linestyle=":", label="clean")
    ax.set_xticks(xs, [r["perturbation"] for r in rows], rotation=40, ha="right", fontsize=8)
    ax.set(ylabel="track accuracy [95 %]", ylim=(0, 1.05), title="robustness of the test tracks")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
