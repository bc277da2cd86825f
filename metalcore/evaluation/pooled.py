"""Track predictions pooled across a sweep's jobs: out-of-fold tables, suspected labels, paired comparisons.

Every job leaves ``test_tracks.csv`` (metalcore.scoring.per_track). The folds of a cross-validation
each test different tracks, so together they give one held-out prediction per track and seed: the
out-of-fold table, scored with an interval over all its tracks. Tracks that the out-of-fold models
put in another class with high confidence are listed as suspected labels (a metalcore song filed as
hardcore, a live recording, a mislabelled folder). Jobs of two configurations with the same seed and
fold tested the same tracks, so they can be compared pair by pair (metalcore.evaluation.paired).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metalcore.core.errors import UserError
from metalcore.evaluation.paired import Comparison, compare
from metalcore.scoring.per_track import TEST_TRACKS, classes_in, read_tracks
from metalcore.uncertainty.bootstrap import formatted, track_intervals, weighted_scores

FOLD_KEY = "data.split.fold"
PAIRED_BY = ("seed", FOLD_KEY)  # jobs with the same values tested the same tracks


def job_rows(jobs: Sequence) -> list[dict]:
    """Every test track of every finished job, tagged with the job, its seed and its fold."""
    rows = []
    for job in jobs:
        if job.status == "ok":
            for row in read_tracks(job.folder / TEST_TRACKS):
                rows.append({"job": job.folder.name, **{k: job.overrides.get(k, "") for k in PAIRED_BY}, **row})
    return rows


def class_names(rows: Sequence[dict]) -> list[str]:
    return classes_in(rows[0]) if rows else []


def arrays(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probs (n, classes), labels (n,), track ids (n,))`` of the rows; a track id per distinct path."""
    classes = class_names(rows)
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    labels = np.array([classes.index(r["true"]) for r in rows])
    _, tracks = np.unique([r["path"] for r in rows], return_inverse=True)
    return probs, labels, tracks


@dataclass(frozen=True)
class OutOfFold:
    """A configuration's pooled held-out predictions and their scores with intervals."""

    rows: list[dict]
    scores: dict[str, float]
    intervals: dict[str, list[float] | None]

    @property
    def tracks(self) -> int:
        return len({r["path"] for r in self.rows})

    def line(self, metrics: Sequence[str] = ("acc", "f1", "auroc", "pr_auc")) -> str:
        return "  ".join(f"{m} {formatted(self.scores[m], self.intervals.get(m))}" for m in metrics)


def out_of_fold(jobs: Sequence, seed: int = 0) -> OutOfFold | None:
    """The held-out rows of ``jobs`` scored as one test set, bootstrapped over tracks; None without rows.

    Each row is one track under one seed; a track tested under several seeds moves with all its rows.
    """
    rows = job_rows(jobs)
    if not rows:
        return None
    probs, labels, tracks = arrays(rows)
    scores = {k: float(v[0]) for k, v in weighted_scores(probs, labels, np.ones((1, len(rows)))).items()}
    return OutOfFold(rows, scores, track_intervals(probs, labels, tracks, seed=seed)["clip"])


def suspected_labels(rows: Sequence[dict], min_confidence: float = 0.8) -> list[dict]:
    """Tracks whose held-out models (mean over seeds) put them in another class with at least
    ``min_confidence``; the most confident disagreement (lowest probability of the filed class) first."""
    classes = class_names(rows)
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    suspects = []
    for path, group in by_path.items():
        probs = np.mean([[float(r[f"p_{c}"]) for c in classes] for r in group], axis=0)
        true, predicted = group[0]["true"], classes[int(probs.argmax())]
        if predicted != true and probs.max() >= min_confidence:
            suspects.append(
                {
                    "path": path,
                    "filed_as": true,
                    "predicted": predicted,
                    "confidence": round(float(probs.max()), 4),
                    "p_filed": round(float(probs[classes.index(true)]), 4),
                    "runs": len(group),
                }
            )
    return sorted(suspects, key=lambda s: s["p_filed"])


def paired(jobs_a: Sequence, jobs_b: Sequence, seed: int = 0) -> Comparison | None:
    """A's jobs against B's on the tracks both tested with the same seed and fold; None when none match."""
    b_rows = {(r["seed"], r[FOLD_KEY], r["path"]): r for r in job_rows(jobs_b)}
    pairs = [(a, b_rows[key]) for a in job_rows(jobs_a) if (key := (a["seed"], a[FOLD_KEY], a["path"])) in b_rows]
    if not pairs:
        return None
    return compare(
        np.array([a["predicted"] == a["true"] for a, _ in pairs]),
        np.array([b["predicted"] == b["true"] for _, b in pairs]),
        np.array([a["path"] for a, _ in pairs]),
        seed=seed,
    )


# -- the report's sections -----------------------------------------------------------------------
def label(group) -> str:
    """A configuration as its overrides (``model=cnn features.n_mels=96``)."""
    return " ".join(f"{k}={v or '(default)'}" for k, v in group.values.items()) or "(every job)"


def find_baseline(sweep, spec: str):
    """The configuration ``--baseline`` names: a job folder (``3``), or an override (``model=cnn``)."""
    for group in sweep.groups:
        if any(str(job.folder.relative_to(sweep.root)) == spec for job in group.jobs):
            return group
    key, _, value = spec.partition("=")
    matches = [g for g in sweep.groups if key in g.values and g.values[key] == value]
    if len(matches) != 1:
        known = "; ".join(label(g) for g in sweep.groups)
        raise UserError(
            f"--baseline {spec}: {'no' if not matches else len(matches)} configurations match "
            f"(give a job folder, or key=value of a swept key); configurations: {known}"
        )
    return matches[0]


def verdict(result: Comparison) -> str:
    if not result.real:
        return "indistinguishable"
    return "real: better" if result.difference > 0 else "real: worse"


def comparison_table(reference, groups: Sequence, seed: int = 0) -> list[str]:
    """Markdown: each configuration against ``reference`` on paired tracks (track accuracy)."""
    lines = [
        "| configuration | pairs | tracks | Δ track acc [95 %] | only it right | only ref. right | McNemar p "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        if group is reference:
            continue
        result = paired(group.jobs, reference.jobs, seed)
        if result is None:
            lines.append(f"| {label(group)} | 0 | 0 | - | - | - | - | no paired jobs (same seed and fold) |")
            continue
        interval = "" if result.interval is None else f" [{result.interval[0]:+.4f}, {result.interval[1]:+.4f}]"
        lines.append(
            f"| {label(group)} | {result.pairs} | {result.tracks} | {result.difference:+.4f}{interval} | "
            f"{result.only_a} | {result.only_b} | {result.p_value:.4g} | {verdict(result)} |"
        )
    return lines


def render_pooled(sweep, baseline: str | None = None, min_confidence: float = 0.8) -> tuple[str, dict]:
    """The report's pooled sections (cross-validation, suspected labels, paired comparisons) and the
    tables to write (``oof_tracks.csv``, ``suspected_labels.csv``: header and rows)."""
    lines: list[str] = []
    tables: dict[str, tuple[list[str], list[list]]] = {}
    crossval = [g for g in sweep.groups if len({j.overrides.get(FOLD_KEY) for j in g.finished} - {None}) > 1]
    if crossval:
        lines += ["", "## Cross-validation: every fold's held-out tracks pooled", ""]
        lines += ["| configuration | folds | tracks | out-of-fold scores [95 %, tracks resampled] |"]
        lines += ["|---|---|---|---|"]
        oof_rows: list[dict] = []
        for group in crossval:
            pooled = out_of_fold(group.finished)
            if pooled is None:
                continue
            folds = len({r[FOLD_KEY] for r in pooled.rows})
            lines.append(f"| {label(group)} | {folds} | {pooled.tracks} | {pooled.line()} |")
            oof_rows += [{**group.values, **row} for row in pooled.rows]
        if oof_rows:
            header = list(dict.fromkeys(k for row in oof_rows for k in row))
            tables["oof_tracks.csv"] = (header, [[row.get(k, "") for k in header] for row in oof_rows])
            suspects = suspected_labels(oof_rows, min_confidence)
            fields = ["path", "filed_as", "predicted", "confidence", "p_filed", "runs"]
            tables["suspected_labels.csv"] = (fields, [[s[k] for k in fields] for s in suspects])
            lines += ["", f"## Suspected labels: held out, put in another class with confidence ≥ {min_confidence}", ""]
            lines += [
                f"- {s['path']}: filed as {s['filed_as']}, predicted {s['predicted']} ({s['confidence']:.3f})"
                for s in suspects[:20]
            ] or ["none"]
            if len(suspects) > 20:
                lines.append(f"- ... {len(suspects) - 20} more in suspected_labels.csv")
    finished = [g for g in sweep.groups if g.finished]
    compared = len(finished) > 1 and any(job_rows(g.finished[:1]) for g in finished)
    if compared:
        best = finished[0]
        lines += ["", f"## Paired against the best configuration ({label(best)}): same tracks, seed and fold", ""]
        lines += comparison_table(best, finished)
    if baseline is not None:
        reference = find_baseline(sweep, baseline)
        lines += ["", f"## Paired against the baseline ({label(reference)}): same tracks, seed and fold", ""]
        lines += comparison_table(reference, finished)
    if compared or baseline is not None:
        lines += [
            "",
            "Paired rows: Δ is the configuration's track accuracy minus the reference's, with a bootstrap "
            "interval over tracks; real = the interval excludes 0 and the exact McNemar test gives p < 0.05.",
        ]
    return "\n".join(lines), tables
