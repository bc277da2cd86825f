"""The benchmark's audio: synthetic tracks in every lossy and lossless format, and the study's WAV pieces.

The study's preprocessor cut every track once into 60 equal WAV pieces (1/60 of a track each,
about 4 s of a 4-minute song); its dataset then read one piece per clip. ``cut_pieces`` does the
same, so the baseline reads what the study read.
"""

from __future__ import annotations

import wave
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from metalcore.audio.encode import write_audio
from metalcore.data.demo import GENRES, render_track

RATE, CHANNELS = 44100, 2
SEGMENT_SECONDS, BATCH = 5.5, 16  # the study's clip length and batch size
PIECES = 60  # the study's clips per track
FORMATS = (".mp3", ".flac", ".ogg", ".m4a")  # the build is timed on each; the loaders read the flac entries


def genre(index: int) -> str:
    """Tracks alternate between the demo's two genres: class ``index % 2``."""
    return GENRES[index % 2]


def _write_track(args: tuple[Path, int, float, float]) -> dict[str, Path]:
    """One synthetic track: its whole length as flac in ``library/<genre>/``, its first ``build_seconds``
    in every format in ``build/``."""
    folder, index, seconds, build_seconds = args
    audio = render_track(genre(index), np.random.default_rng(index), seconds, RATE)
    for sub in (folder / "library" / genre(index), folder / "build"):
        sub.mkdir(parents=True, exist_ok=True)
    written = {"track": write_audio(folder / "library" / genre(index) / f"track{index:03d}.flac", audio, RATE)}
    head = audio[:, : round(build_seconds * RATE)]
    for suffix in FORMATS if build_seconds else ():
        written[suffix] = write_audio(folder / "build" / f"track{index:03d}{suffix}", head, RATE)
    return written


def make_sources(
    folder: Path, tracks: int, seconds: float, build_seconds: float, workers: int
) -> tuple[list[Path], dict[str, list[Path]]]:
    """(whole tracks in ``folder/library/<genre>/``, {format: the first ``build_seconds`` of each}), in parallel.

    ``build_seconds=0`` writes no format copies (training reads the whole tracks only).
    """
    jobs = [(folder, i, seconds, min(seconds, build_seconds)) for i in range(tracks)]
    with ProcessPoolExecutor(min(workers, tracks), mp_context=get_context("spawn")) as pool:
        written = list(pool.map(_write_track, jobs))
    return [w["track"] for w in written], {s: [w[s] for w in written] for s in FORMATS if build_seconds}


def cut_pieces(pcm: np.ndarray, folder: Path, stem: str, pieces: int = PIECES) -> list[Path]:
    """The study's preprocessing: int16 ``(frames, channels)`` cut into ``pieces`` equal 16-bit WAV files."""
    folder.mkdir(parents=True, exist_ok=True)
    size = len(pcm) // pieces
    paths = []
    for k in range(pieces):
        paths.append(folder / f"{stem}_{k:02d}.wav")
        with wave.open(str(paths[-1]), "wb") as out:
            out.setnchannels(pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(np.ascontiguousarray(pcm[k * size : (k + 1) * size]).tobytes())
    return paths
