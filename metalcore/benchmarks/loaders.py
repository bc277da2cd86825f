"""Loader throughput: clips per second that a training loop receives, from each data path.

Each path is read as training reads it (batch 16, shuffled, workers kept alive across epochs): the
study's WAV pieces with their Mel computed per clip, the naive whole-file path, and metalcore's
cache, raw (what an accelerator waits for) and with metalcore's own Mel computed on this CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from metalcore.audio.cache import CachedTrack
from metalcore.audio.pcm import to_float
from metalcore.benchmarks.sources import BATCH, RATE
from metalcore.benchmarks.study import LENGTH, N_FFT, N_MELS, StudyClips, WholeFileClips
from metalcore.data.segments import RandomCrops, SegmentDataset
from metalcore.models.frontend import MelFrontend

PATHS = {
    "study": "study: WAV piece + CPU Mel per clip",
    "whole": "naive: decode whole file + CPU Mel per clip",
    "cache": "metalcore: memory-mapped int16 slices",
    "cache+mel": "metalcore + CPU Mel per batch",
}


def metalcore_mel() -> MelFrontend:
    """metalcore's front-end at the study's settings, on the CPU, as inference runs it."""
    return MelFrontend(RATE, n_mels=N_MELS, n_fft=N_FFT, hop_length=N_FFT // 2).eval()


def loader_speed(dataset: Dataset, sampler, workers: int, mel: MelFrontend | None = None) -> float:
    """Clips per second over one pass of ``sampler``, after a first batch has started the workers."""
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    if workers:
        next(iter(loader))
    epoch = iter(loader)  # waits for the warm-up's prefetched batches before the clock starts
    began, clips = time.perf_counter(), 0
    with torch.no_grad():
        for audio, *_ in epoch:
            if mel is not None:
                audio = mel(to_float(audio))  # (B, C, samples) -> (B, C, n_mels, frames)
            clips += len(audio)
    seconds = time.perf_counter() - began
    del epoch, loader  # stops the workers
    return clips / seconds


def measure_loaders(
    cached: list[CachedTrack], pieces: list[Path], piece_labels: list[int], clips: int, slow_clips: int
) -> Iterator[tuple[str, int, float]]:
    """(path, workers, clips/s): the study's path, the whole-file path, metalcore raw and with its CPU Mel."""
    frames = np.array([t.frames for t in cached], dtype=np.int64)
    dataset = SegmentDataset(np.array([str(t.path) for t in cached]), frames, np.arange(len(cached)) % 2, 2, LENGTH)
    per_track, slow_per_track = (max(1, -(-n // len(cached))) for n in (clips, slow_clips))
    study = StudyClips(pieces, piece_labels)
    rng = np.random.default_rng(0)
    for workers in (0, 2):
        yield "study", workers, loader_speed(study, rng.permutation(len(pieces))[:slow_clips].tolist(), workers)
        crops = RandomCrops(frames, LENGTH, slow_per_track, seed=0)
        yield "whole", workers, loader_speed(WholeFileClips([t.source for t in cached]), crops, workers)
        yield "cache", workers, loader_speed(dataset, RandomCrops(frames, LENGTH, per_track, seed=0), workers)
        crops = RandomCrops(frames, LENGTH, per_track, seed=0)
        yield "cache+mel", workers, loader_speed(dataset, crops, workers, mel=metalcore_mel())


def frontend_times(repeats: int = 5) -> dict[str, float]:
    """Milliseconds per clip of Mel features on this CPU, best of ``repeats`` batches of 16 noise clips.

    The study's per-item call runs on one thread, as in its DataLoader workers; metalcore's front-end
    runs as training runs it (SpecAugment on); its batched Mel call is the one the CPU path avoids.
    """
    from metalcore.benchmarks.study import StudyMel

    audio = 0.1 * torch.randn(BATCH, 2, LENGTH, generator=torch.Generator().manual_seed(0))
    study, ours = StudyMel(), metalcore_mel().train()
    threads = torch.get_num_threads()

    def study_call() -> None:
        torch.set_num_threads(1)
        try:
            [study(clip) for clip in audio]
        finally:
            torch.set_num_threads(threads)

    calls = {"study": study_call, "metalcore": lambda: ours(audio), "batched": lambda: ours.mel(audio)}
    best = dict.fromkeys(calls, float("inf"))
    with torch.no_grad():
        for _ in range(repeats):
            for name, call in calls.items():  # interleaved: a burst of load hits every path alike
                began = time.perf_counter()
                call()
                best[name] = min(best[name], (time.perf_counter() - began) * 1000 / BATCH)
    return best
