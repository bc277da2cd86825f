"""Sweep throughput: several small training jobs at once against one at a time, on this machine.

A multirun of small jobs leaves cores idle between epochs (data set-up, validation, writing
outputs); the joblib launcher runs jobs side by side, each with its share of the cores
(``threads``), so those gaps fill. Every way runs the same jobs on the same prepared cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

EPOCHS = 3
# the demo set shrunk so one job takes seconds: the grid's shape, not the study's scale
JOB = (
    "data=synthetic",
    "data.demo.tracks_per_class=6",
    "data.demo.seconds=8",
    "data.demo.sample_rate=22050",
    "data.sample_rate=16000",
    "data.segment_seconds=2",
    "data.val_fraction=0.34",
    "data.test_fraction=0.34",
    "data.num_workers=0",
    "data.workers_for_decoding=1",
    "features.n_fft=512",
    "features.hop_length=256",
    "trainer=cpu",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.enable_progress_bar=false",
    "~logger",
)


def ways(cores: int) -> list[tuple[str, tuple[str, ...]]]:
    """(label, launcher overrides): one job at a time on every core, then ``cores`` jobs at once.

    joblib's workers get ``cores // n_jobs`` threads by default (loky sets OMP_NUM_THREADS);
    ``threads`` overrides that budget, here to show what oversubscribing costs.
    """
    joblib = ("hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}")
    return [
        (f"one at a time, {cores} threads", ()),
        (f"joblib, {cores} jobs x 1 thread", (*joblib, "threads=1")),
        (f"joblib, {cores} jobs x {cores} threads (oversubscribed)", (*joblib, f"threads={cores}")),
    ]


def run(module: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def time_sweeps(folder: Path, jobs: int, cores: int, crops: int) -> list[tuple[str, float]]:
    """(way, seconds) for ``jobs`` seeds of the small job with ``crops`` clips per training track and epoch,
    each way; the demo set is made and decoded first."""
    common = (*JOB, f"data.segments_per_track={crops}", f"paths.cache_dir={folder / 'cache'}")
    run("metalcore.prepare", *common, f"hydra.run.dir={folder / 'prepare'}")
    seeds = "seed=" + ",".join(str(s) for s in range(jobs))
    timed = []
    for k, (label, launcher) in enumerate(ways(cores)):
        began = time.perf_counter()
        run("metalcore.train", "-m", *common, seeds, *launcher, f"hydra.sweep.dir={folder / f'sweep{k}'}")
        timed.append((label, time.perf_counter() - began))
    return timed
