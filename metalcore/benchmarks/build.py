"""Cache build speed: decoding sources into a cold cache, in x realtime."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from metalcore.audio.cache import AudioCache, CachedTrack
from metalcore.benchmarks.sources import CHANNELS, RATE

BUILD_TARGET = 150.0  # x realtime per core


def time_build(sources: list[Path], root: Path, workers: int) -> tuple[float, float, list[CachedTrack]]:
    """(seconds of audio, wall seconds, entries) of decoding ``sources`` into a cold cache at ``root``."""
    began = time.perf_counter()
    result = AudioCache(root, RATE, CHANNELS).build(sources, workers=workers)
    wall = time.perf_counter() - began
    if result.skipped or result.decoded != len(sources):
        raise RuntimeError(f"benchmark sources failed to decode: {result.skipped}")
    tracks = list(result.tracks.values())
    return sum(t.duration for t in tracks), wall, tracks


def pool_startup(workers: int) -> float:
    """Seconds to start and stop ``workers`` processes the way a build does, with nothing to decode."""
    began = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(abs, range(workers)))
    return time.perf_counter() - began
