"""Where a page's numbers came from: the run's config, the checkpoint, the split and both environments.

A figure without its origin cannot be checked, so the page carries what the run recorded (its
resolved config, the environment it trained in, its split's sizes) beside what this evaluation used
(checkpoint, data, device, versions and the code's commit, as ``metalcore.core.environment`` records them).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from metalcore.core.environment import environment
from metalcore.core.files import read_csv
from metalcore.data.catalogue import scan
from metalcore.inference.checkpoint import Classifier


def run_record(run: Path) -> dict:
    """What the run wrote beside its checkpoints: config, training environment, split sizes (empty when absent)."""
    config = next((p for p in (run / "config.yaml", run / ".hydra" / "config.yaml") if p.is_file()), None)
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    return {
        "config": config.read_text(errors="replace") if config else "",
        "config_file": str(config or ""),
        "environment": metrics.get("environment") or {},
        "split_counts": metrics.get("counts") or {},
        "seed": metrics.get("seed"),
    }


def provenance(classifier: Classifier, run: Path, source: str, hop_seconds: float) -> dict:
    """Everything the page's "where these numbers come from" section shows."""
    return {
        "checkpoint": str(classifier.checkpoint),
        "run": str(run),
        "data": source,
        "split_file": str(run / "split.csv") if (run / "split.csv").is_file() else "",
        "temperature": classifier.temperature,
        "sample_rate": classifier.sample_rate,
        "channels": classifier.channels,
        "segment_seconds": classifier.segment_seconds,
        "hop_seconds": hop_seconds,
        "device": str(classifier.device),
        "evaluated_in": environment(),
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **run_record(run),
    }


def artists_and_albums(run: Path, data_root: Path | None) -> dict[str, tuple[str, str]]:
    """path -> (artist, album) of the evaluated tracks: from the run's split.csv, or the folder's catalogue."""
    if data_root is not None:
        return {str(t.path): (t.artist, t.album) for t in scan(data_root, min_classes=1)}
    split = run / "split.csv"
    rows = read_csv(split) if split.is_file() else []
    return {row["path"]: (row.get("artist", ""), row.get("album", "")) for row in rows}
