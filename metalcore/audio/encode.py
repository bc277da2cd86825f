"""Write float audio to any format the decoder reads, through PyAV's bundled FFmpeg.

The synthetic demo set and the tests make their audio with this, so every format metalcore
claims to read is one it can also produce without a system FFmpeg.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (container format, codec, codec sample format, sample rates the codec accepts or None)
_FORMATS: dict[str, tuple[str, str, str, tuple[int, ...] | None]] = {
    ".wav": ("wav", "pcm_s16le", "s16", None),
    ".flac": ("flac", "flac", "s16", None),
    ".mp3": ("mp3", "libmp3lame", "fltp", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    ".m4a": (
        "ipod",
        "aac",
        "fltp",
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
    ),
    ".ogg": ("ogg", "vorbis", "fltp", None),
    ".opus": ("ogg", "libopus", "flt", (8000, 12000, 16000, 24000, 48000)),
}
_ALAC = ("ipod", "alac", "s16p", None)

SUFFIXES = tuple(_FORMATS)
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    *,
    codec: str | None = None,
    tags: dict[str, str] | None = None,
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``audio`` (float32 ``[channels, samples]`` in [-1, 1]) to ``path``.

        The format follows the suffix (any case). ``codec="alac"`` writes Apple Lossless into an
        ``.m4a``. ``tags`` become container metadata (e.g. ``{"artist": ...}``). Codecs that take
        only certain rates (opus, mp3, AAC) are resampled to the nearest one they accept. ``bit_rate``
    (bits per second) sets a lossy codec's rate, e.g. 64000 for a low-quality mp3. ``options`` go
    to the encoder as FFmpeg's private options (e.g. ``{"vbr": "constrained"}`` for libopus).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: cannot write '{suffix}' files; choose one of {', '.join(SUFFIXES)}")
    fmt, codec_name, sample_fmt, rates = _ALAC if codec == "alac" else _FORMATS[suffix]
    audio = np.ascontiguousarray(np.clip(np.atleast_2d(audio), -1.0, 1.0), dtype=np.float32)
    channels = audio.shape[0]
    out_rate = sample_rate if rates is None else min(rates, key=lambda r: abs(r - sample_rate))

    with av.open(str(path), mode="w", format=fmt) as container:
        for key, value in (tags or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec_name, rate=out_rate)
        stream.layout = _LAYOUTS.get(channels, f"{channels}c")
        stream.format = sample_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.options = {
            **({"strict": "experimental"} if codec_name == "vorbis" else {}),
            **(options or {}),
        }
        resampler = av.AudioResampler(format=sample_fmt, layout=stream.layout, rate=out_rate)
        block = sample_rate  # one second per frame keeps memory flat for long tracks
        for start in range(0, audio.shape[1], block):
            chunk = audio[:, start : start + block]
            frame = av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1).copy(), format="flt", layout=stream.layout)
            frame.sample_rate = sample_rate
            frame.pts, frame.time_base = start, Fraction(1, sample_rate)  # Ogg's granule positions follow these
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return path
