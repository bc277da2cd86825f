"""``python -m metalcore.bench``: how fast the cache is built and how fast training reads it, measured here.

It synthesises its own sources (mp3 and flac, 44.1 kHz stereo) in a temporary folder, then measures
1. the cache build from cold, in x realtime, with one worker (per core) and with every core (total);
2. the training loader over the warm cache (SegmentDataset + RandomCrops, as training uses them)
   against the naive path the study took: each clip opens and decodes its whole file and computes
   its Mel-spectrogram on the CPU inside ``__getitem__``. Training computes the Mel-spectrogram on the
   accelerator, so the cache is also timed with that Mel computed on the CPU per batch, like for like.

torch is imported inside the loader functions, not at the top: the cache build's worker processes
re-import this module when they start, and should start as quickly as those of ``metalcore.prepare``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np

from metalcore.audio.cache import AudioCache, CachedTrack
from metalcore.audio.decode import decode
from metalcore.audio.encode import write_audio
from metalcore.data.demo import GENRES, render_track

RATE, CHANNELS = 44100, 2
SEGMENT_SECONDS, BATCH = 5.5, 16
N_FFT, HOP, N_MELS = 1024, 512, 64  # the study's front-end
BUILD_TARGET = 150.0  # x realtime per core
LOADER_TARGET = 20.0  # cache loader / naive loader
FORMATS = (".mp3", ".flac")


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    """CPU model, cores and the versions that set the speed."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    import torch

    codec = ".".join(map(str, av.library_versions["libavcodec"]))
    return (
        f"{model}, {cores()} cores, {platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, PyAV {av.__version__} (libavcodec {codec})"
    )


# -- sources ---------------------------------------------------------------------------------------
def _write_track(args: tuple[Path, int, float]) -> list[Path]:
    """One synthetic track written once per format (top-level: it runs in worker processes)."""
    folder, index, seconds = args
    audio = render_track(GENRES[index % 2], np.random.default_rng(index), seconds, RATE)
    return [write_audio(folder / f"track{index:03d}{suffix}", audio, RATE) for suffix in FORMATS]


def make_sources(folder: Path, tracks: int, seconds: float, workers: int) -> dict[str, list[Path]]:
    """``tracks`` different tracks of ``seconds`` in each format, rendered in parallel."""
    jobs = [(folder, i, seconds) for i in range(tracks)]
    with ProcessPoolExecutor(min(workers, tracks), mp_context=get_context("spawn")) as pool:
        written = list(pool.map(_write_track, jobs))
    return {suffix: [files[k] for files in written] for k, suffix in enumerate(FORMATS)}


# -- cache build -----------------------------------------------------------------------------------
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


# -- loaders ---------------------------------------------------------------------------------------
def cpu_mel():
    """metalcore's own front-end at the study's settings, on the CPU, as inference runs it:
    ``(batch, channels, samples)`` -> ``(batch, channels, n_mels, frames)``."""
    from metalcore.models.frontend import MelFrontend

    return MelFrontend(RATE, n_mels=N_MELS, n_fft=N_FFT, hop_length=HOP).eval()


class NaiveClips:
    """The study's data path: a clip decodes its whole file (as ``librosa.load`` did), then its Mel on the CPU.

    Key ``(track, start)`` -> ``(log-Mel [C, n_mels, frames], label)``, the same keys as SegmentDataset.
    """

    def __init__(self, sources: list[Path], length: int) -> None:
        self.sources, self.length = [str(s) for s in sources], length
        self.mel = cpu_mel()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: tuple[int, int]):
        import torch

        track, start = key
        audio = decode(self.sources[track], RATE, CHANNELS)  # the whole file, every time
        clip = np.zeros((CHANNELS, self.length), np.float32)
        part = audio[:, start : start + self.length]
        clip[:, : part.shape[1]] = part
        with torch.no_grad():
            return self.mel(torch.from_numpy(clip)[None])[0], track % 2


def loader_speed(dataset, frames: np.ndarray, per_track: int, workers: int, mel=None) -> float:
    """Segments per second over one epoch of ``per_track`` crops per track, read as training reads them.

    With workers, a first batch starts them and they stay (``persistent_workers``, as in training), so
    the epoch timed after it measures the steady state, not process start-up.
    """
    import torch
    from torch.utils.data import DataLoader

    from metalcore.data.segments import RandomCrops

    sampler = RandomCrops(frames, round(SEGMENT_SECONDS * RATE), per_track, seed=0)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    if workers:
        next(iter(loader))
    epoch = iter(loader)  # waits for the warm-up's prefetched batches before the clock starts
    began, segments = time.perf_counter(), 0
    with torch.no_grad():
        for audio, *_ in epoch:
            if mel is not None:
                audio = mel(audio)  # (B, C, samples) -> (B, C, n_mels, frames)
            segments += len(audio)
    seconds = time.perf_counter() - began
    del epoch, loader  # stops the workers
    return segments / seconds


def measure_loaders(
    tracks: list[CachedTrack], sources: list[Path], segments: int, naive_segments: int
) -> Iterator[tuple[str, int, float]]:
    """(path, workers, segments/s) for the naive path, then the cache, then the cache with a CPU Mel."""
    from metalcore.data.segments import SegmentDataset

    length = round(SEGMENT_SECONDS * RATE)
    frames = np.array([t.frames for t in tracks], dtype=np.int64)
    cached = SegmentDataset(
        np.array([str(t.path) for t in tracks]), frames, np.arange(len(tracks)) % 2, CHANNELS, length
    )
    per_track, naive_per_track = (max(1, -(-n // len(tracks))) for n in (segments, naive_segments))
    for workers in (0, 2):
        yield "naive", workers, loader_speed(NaiveClips(sources, length), frames, naive_per_track, workers)
        yield "cache", workers, loader_speed(cached, frames, per_track, workers)
        yield "cache+mel", workers, loader_speed(cached, frames, per_track, workers, mel=cpu_mel())


# -- report ----------------------------------------------------------------------------------------
PATHS = {
    "naive": "naive: decode whole file + CPU Mel per clip",
    "cache": "cache: memory-mapped int16 slices",
    "cache+mel": "cache + CPU Mel per batch",
}


def verdict(value: float, target: float) -> str:
    return f">= {target:g}x {'met' if value >= target else 'MISSED'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metalcore.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8, help="tracks per format (default 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each track (default 60)")
    parser.add_argument("--workers", type=int, default=cores(), help="processes for the all-core build")
    parser.add_argument("--segments", type=int, default=480, help="segments timed per cache-loader run (default 480)")
    parser.add_argument("--naive-segments", type=int, default=64, help="segments timed per naive run (default 64)")
    parser.add_argument("--quick", action="store_true", help="a small run (2 tracks x 8 s, few batches)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tracks, args.seconds, args.segments, args.naive_segments = 2, 8.0, 32, 16
    if args.seconds <= SEGMENT_SECONDS or args.tracks < 1 or args.workers < 1:
        parser.error(f"--seconds must exceed the {SEGMENT_SECONDS} s segment; --tracks and --workers >= 1")

    print(f"metalcore benchmark on {machine()}")
    if args.quick:
        print("--quick: a check that the benchmark runs; its short tracks make the figures unrepresentative")
    print(
        f"sources: {args.tracks} synthetic tracks x {args.seconds:g} s per format, {RATE / 1000:g} kHz stereo",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="metalcore-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "music").mkdir()
        sources = make_sources(tmp / "music", args.tracks, args.seconds, args.workers)

        print(
            f"\ncache build from cold (decode, resample, write int16), x realtime; {args.workers} workers "
            f"include starting their processes"
        )
        print(
            f"{'format':<6}  {'per core (1 worker)':>19}  {'total (' + str(args.workers) + ' workers)':>19}  "
            f"target per core"
        )
        warm: list[CachedTrack] = []
        for suffix in FORMATS:
            runs = {
                workers: time_build(sources[suffix], tmp / f"cache{suffix}-{workers}", workers)
                for workers in dict.fromkeys((1, args.workers))
            }
            cells = {workers: f"{audio / wall:.0f}x in {wall:.2f} s" for workers, (audio, wall, _) in runs.items()}
            audio, wall, tracks = runs[1]
            print(
                f"{suffix[1:]:<6}  {cells[1]:>19}  {cells[args.workers]:>19}  {verdict(audio / wall, BUILD_TARGET)}",
                flush=True,
            )
            warm = tracks if suffix == ".mp3" else warm
        if args.workers > 1:
            print(
                f"(the total includes starting {args.workers} worker processes, {pool_startup(args.workers):.2f} s "
                f"here: paid once per build, it weighs less on a library longer than this sample)"
            )

        print(
            f"\ntraining loader from the warm cache vs the naive path: batch {BATCH}, {SEGMENT_SECONDS:g} s "
            f"segments at {RATE / 1000:g} kHz stereo, mp3 sources"
        )
        print(f"{'path':<44}  {'workers':>7}  {'segments/s':>10}  {'x naive':>8}  target")
        naive = {}
        for path, workers, speed in measure_loaders(warm, sources[".mp3"], args.segments, args.naive_segments):
            naive[workers] = naive.get(workers, speed)
            ratio = speed / naive[workers]
            target = verdict(ratio, LOADER_TARGET) if path == "cache" else ""
            print(f"{PATHS[path]:<44}  {workers:>7}  {speed:>10.1f}  {ratio:>7.1f}x  {target}", flush=True)
        print(
            "training computes the Mel-spectrogram on the accelerator, so the 'cache' rows are what it waits for;\n"
            "'cache + CPU Mel' adds the Mel on this CPU, like for like with the naive path (no target)"
        )


if __name__ == "__main__":
    sys.exit(main())
