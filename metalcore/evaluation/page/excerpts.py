"""Audio beside the evaluation page: one small Opus file per track, as long as the size budget allows.

A page is only useful if it can be mailed, copied to a laptop and opened there, so its size is
fixed before anything is encoded: the audio budget is shared equally among the tracks, and a track
longer than its share is cut to an excerpt centred on the window the page shows (its most
confidently wrong one). On a small evaluation every track fits whole; 200 full-length tracks get
about a minute each. Opus at 24 kbit/s (mono) keeps a riff and a breakdown recognisable and plays in
every current browser from the file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalcore.audio.decode import stream
from metalcore.audio.encode import write_audio
from metalcore.audio.pcm import pcm_to_float

BIT_RATE = 24_000  # bits per second of the Opus excerpts
# a constrained variable rate keeps each file's size predictable (a little over the nominal rate with
# Ogg's pages: CONTAINER_OVERHEAD); a low encoder complexity shortens the encoding
OPUS_OPTIONS = {"vbr": "constrained", "compression_level": "3"}
AUDIO_BUDGET = 40_000_000  # bytes of audio on one page; the rest of 50 MB is left to the page itself
CONTAINER_OVERHEAD = 1.1  # bytes written over the nominal rate, with a margin


@dataclass(frozen=True)
class Span:
    """The part of a track that is written beside the page, in seconds."""

    start: float
    end: float


def seconds_per_track(tracks: int, budget: int = AUDIO_BUDGET, bit_rate: int = BIT_RATE) -> float:
    """Seconds of audio each of ``tracks`` may have within ``budget`` bytes at ``bit_rate``."""
    return budget / max(tracks, 1) / (bit_rate / 8 * CONTAINER_OVERHEAD)


def span(duration: float, centre: float, seconds: float) -> Span:
    """``seconds`` of a ``duration``-long track around ``centre``, shifted to stay inside the track."""
    if seconds >= duration:
        return Span(0.0, duration)
    start = min(max(centre - seconds / 2, 0.0), duration - seconds)
    return Span(start, start + seconds)


def decode_span(path: Path, sample_rate: int, channels: int, part: Span) -> np.ndarray:
    """int16 ``(frames, channels)`` of ``part``, decoding only as far as its end."""
    first, last = round(part.start * sample_rate), round(part.end * sample_rate)
    blocks, read = [], 0
    for block in stream(path, sample_rate, channels):
        if read + len(block) > first:
            blocks.append(block[max(first - read, 0) : last - read])
        read += len(block)
        if read >= last:
            break
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), dtype=np.int16)


def write_excerpt(path: Path, audio: np.ndarray, sample_rate: int, bit_rate: int = BIT_RATE) -> Path:
    """Encode int16 ``(frames, channels)`` down-mixed to mono as Opus at ``bit_rate``."""
    mono = pcm_to_float(audio).mean(0, keepdims=True)
    return write_audio(path, mono, sample_rate, bit_rate=bit_rate, options=OPUS_OPTIONS)
