"""Predictions as people and programs read them: a table on the terminal, CSV or JSON files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from metalcore.core import files
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import Outcome

OUTPUT_SUFFIXES = (".csv", ".json")


def minutes(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for the table."""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def track_record(outcome: Outcome, classes: list[str], timeline: bool) -> dict:
    """One track as a JSON-ready dict; ``timeline`` adds the segments."""
    p = outcome.prediction
    record = {
        "path": str(outcome.path),
        "label": p.label if p else None,
        "confidence": round(p.confidence, 6) if p else None,
        "segments": len(p.starts) if p else 0,
        "duration_s": round(p.duration, 3) if p else None,
        "probs": {c: round(float(v), 6) for c, v in zip(classes, p.probs)} if p else None,
        "error": outcome.error,
    }
    if timeline:
        record["timeline"] = (
            []
            if p is None
            else [
                {
                    "start_s": round(float(start), 3),
                    "end_s": round(min(start + p.segment_seconds, p.duration), 3),
                    "label": classes[int(probs.argmax())],
                    "probs": {c: round(float(v), 6) for c, v in zip(classes, probs)},
                }
                for start, probs in zip(p.starts, p.segment_probs)
            ]
        )
    return record


def write_table(path: Path, records: list[dict], classes: list[str]) -> list[Path]:
    """Tracks to ``path``; with timelines, their segments to ``<stem>.segments.csv`` beside it."""
    probs = [f"p_{c}" for c in classes]
    rows = [
        [
            r["path"],
            r["label"] or "",
            r["confidence"] if r["label"] else "",
            r["segments"],
            r["duration_s"] if r["duration_s"] is not None else "",
            *((r["probs"] or {}).get(c, "") for c in classes),
            r["error"] or "",
        ]
        for r in records
    ]
    files.write_csv(path, ["path", "label", "confidence", "segments", "duration_s", *probs, "error"], rows)
    written = [path]
    if records and "timeline" in records[0]:
        segments = segments_path(path)
        rows = [
            [r["path"], s["start_s"], s["end_s"], s["label"], *(s["probs"][c] for c in classes)]
            for r in records
            for s in r["timeline"]
        ]
        files.write_csv(segments, ["path", "start_s", "end_s", "label", *probs], rows)
        written.append(segments)
    return written


def segments_path(path: Path) -> Path:
    """Where ``--segments`` writes every segment's row beside the CSV table ``path``."""
    return path.with_name(f"{path.stem}.segments.csv")


def print_table(records: list[dict], classes: list[str], out: TextIO | None = None) -> None:
    """The table a person reads: one row per track; errors in place of a label; timelines after it."""
    out = out or sys.stdout
    header = ("track", "label", "confidence", "segments", "duration")
    cells = [
        (r["path"], r["label"], f"{r['confidence']:.3f}", str(r["segments"]), minutes(r["duration_s"]))
        if r["label"]
        else (r["path"], f"error: {r['error']}")
        for r in records
    ]
    full = [header, *(row for row in cells if len(row) == len(header))]  # error rows only span two columns
    width = [max(len(row[0]) for row in [header, *cells]), *(max(len(row[i]) for row in full) for i in range(1, 5))]
    for row in [header, *cells]:
        line = [f"{row[0]:<{width[0]}}", f"{row[1]:<{width[1]}}" if len(row) > 2 else row[1]]
        line += [f"{cell:>{w}}" for cell, w in zip(row[2:], width[2:])]
        print("  ".join(line).rstrip(), file=out)
    for r in records:
        if r.get("timeline"):
            print(f"\n{r['path']}\n  {'start':>8}  {'end':>8}  " + "  ".join(f"{c:>10}" for c in classes), file=out)
            for s in r["timeline"]:
                print(
                    f"  {s['start_s']:>8.2f}  {s['end_s']:>8.2f}  "
                    + "  ".join(f"{s['probs'][c]:>10.3f}" for c in classes)
                    + f"  {s['label']}",
                    file=out,
                )


def write_output(path: Path, records: list[dict], classifier: Classifier, hop: float | None) -> list[Path]:
    """The table as JSON (timelines nested in each track) or CSV (timelines beside it); the files written."""
    if path.suffix.lower() == ".csv":
        return write_table(path, records, classifier.classes)
    report = {
        "checkpoint": str(classifier.checkpoint),
        "classes": classifier.classes,
        "sample_rate": classifier.sample_rate,
        "segment_seconds": classifier.segment_seconds,
        "hop_seconds": hop or classifier.segment_seconds,
        "tracks": records,
    }
    files.write_json(path, report)
    return [path]
