"""The frozen probe's cost: a k-fold sweep of ``model=musicnn`` on the demo, features cold and cached.

The first sweep computes every clip's musicnn features (in its first job; later folds read them);
a second sweep of the same folds finds them all cached and only trains heads: what every later
probe of the library costs. The demo is made and decoded, and the weights fetched, before timing.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from metalcore.benchmarks.sweeps import run
from metalcore.models.pretrained.wheel import WHEELS_ENV, pretrained_folder


def probe_job(cache: Path, tracks_per_class: int, seconds: float) -> tuple[str, ...]:
    """The demo (``tracks_per_class`` tracks of ``seconds`` per class) through the frozen probe."""
    return (
        "data=synthetic",
        "model=musicnn",
        f"data.demo.tracks_per_class={tracks_per_class}",
        f"data.demo.seconds={seconds}",
        "data.num_workers=0",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        "~logger",
        f"paths.cache_dir={cache}",
    )


def cpu_seconds() -> float:
    """User and system CPU time of the finished child processes so far: what a sweep costs the cores,
    which on a shared machine says more than its wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_probe(folder: Path, folds: int, tracks_per_class: int, seconds: float) -> list[tuple[str, float, float]]:
    """(what, wall seconds, CPU seconds) for a ``folds``-fold probe sweep computing the features, then
    with them cached."""
    os.environ.setdefault(WHEELS_ENV, str(pretrained_folder(os.environ.get("METALCORE_CACHE", ".cache/metalcore"))))
    job = probe_job(folder / "cache", tracks_per_class, seconds)
    run("metalcore.prepare", *job, f"hydra.run.dir={folder / 'prepare'}")
    run("metalcore.pretrained", "fetch", "musicnn", "--backbone", "MSD_musicnn", "--cache-dir", str(folder / "cache"))
    sweep = (f"data.split.folds={folds}", f"data.split.fold={','.join(map(str, range(folds)))}")
    timed = []
    for k, label in enumerate(("features computed (first sweep)", "features cached (every later sweep)")):
        began, cpu = time.perf_counter(), cpu_seconds()
        run("metalcore.train", "-m", *job, *sweep, f"hydra.sweep.dir={folder / f'probe{k}'}")
        timed.append((label, time.perf_counter() - began, cpu_seconds() - cpu))
    return timed
