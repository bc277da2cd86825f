"""Turn any audio file into int16 samples at one rate and channel count, in a single decoding pass.

FFmpeg (through PyAV's bundled build) decodes every format metalcore reads, and its resampler
converts rate, channel layout and sample format on the decoded frames as they come, so a file is
read once and never held whole in memory. Every way a file can fail (missing, empty, not audio,
corrupt, silent) becomes a ``DecodeError`` whose message names the file and says why in words,
so a data set build can skip the file and list it rather than stop on an FFmpeg exception.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from metalcore.audio.integrity import check_clock, check_rate, cut_short, mp4_cut_before_index
from metalcore.audio.pcm import FULL_SCALE, pcm_to_float

AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus"})
SILENCE_DBFS = -90.0  # a peak below this (one int16 step or less) is digital silence


class DecodeError(Exception):
    """A file that cannot be turned into usable audio; ``str(err)`` is ``'<path>: <reason>'``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # keep (path, reason) when sent back from a worker process
        return type(self), (self.path, self.reason)


def _why(err: Exception) -> str:
    """FFmpeg's own words for an error, without the errno and path PyAV adds."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _open(path: Path) -> av.container.InputContainer:
    """Open a container, or raise DecodeError saying why it cannot be read."""
    require_regular(path)
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except FileNotFoundError as err:
        raise DecodeError(path, "file not found") from err
    except OSError as err:  # a folder, no permission...
        raise DecodeError(path, f"cannot read file: {err.strerror or err}") from err
    if empty:
        raise DecodeError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as err:
        reason = mp4_cut_before_index(path) or f"not an audio file or unsupported format: {_why(err)}"
        raise DecodeError(path, reason) from err


def require_regular(path: Path) -> None:
    """Refuse what is not a regular file before opening it: reading a FIFO or a device waits forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        raise DecodeError(path, "file not found") from err
    except OSError as err:
        raise DecodeError(path, f"cannot read file: {err.strerror or err}") from err
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise DecodeError(path, f"cannot read file: {kind}, not an audio file")


def _averaged(frame: av.AudioFrame) -> av.AudioFrame:
    """Mono frame holding the mean of all channels: the down-mix for layouts FFmpeg cannot map."""
    data = frame.to_ndarray()
    if np.issubdtype(data.dtype, np.integer):
        half = 2.0 ** (8 * data.dtype.itemsize - 1)
        data = data.astype(np.float64) - (half if np.issubdtype(data.dtype, np.unsignedinteger) else 0.0)
        data /= half
    channels = frame.layout.nb_channels
    mean = data.mean(axis=0) if frame.format.is_planar else data.reshape(-1, channels).mean(axis=1)
    mono = av.AudioFrame.from_ndarray(mean.astype(np.float32)[None], format="flt", layout="mono")
    mono.sample_rate = frame.sample_rate
    return mono


class _Converter:
    """FFmpeg's resampler for one input setup (format, layout, rate), giving int16 (n, 1|2) arrays.

    Mono stays mono here even when stereo is asked for: the caller duplicates it, because FFmpeg's
    mono-to-stereo up-mix lowers the level by 3 dB.
    """

    def __init__(self, in_channels: int, sample_rate: int, channels: int):
        self.sample_rate = sample_rate
        self.layout = "stereo" if channels == 2 and in_channels > 1 else "mono"
        self.resampler = av.AudioResampler(format="s16", layout=self.layout, rate=sample_rate)
        self.average = False
        self.started = False

    def __call__(self, frame: av.AudioFrame | None) -> Iterator[np.ndarray]:
        if self.average and frame is not None:
            frame = _averaged(frame)
        try:
            out = self.resampler.resample(frame)
        except av.error.ArgumentError:
            if self.started or self.average or frame is None:
                raise
            # FFmpeg has no down-mix for this layout (e.g. 9 unlabelled channels): average them.
            self.average, self.layout = True, "mono"
            self.resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            yield from self(frame)
            return
        self.started = True
        width = 2 if self.layout == "stereo" else 1
        for resampled in out:
            yield resampled.to_ndarray().reshape(-1, width)


def _pcm(container: av.container.InputContainer, sample_rate: int, channels: int) -> Iterator[np.ndarray]:
    """Decoded audio as int16 (n, 1|2) arrays at ``sample_rate``; a new converter when the input changes."""
    convert, setup = None, None
    for frame in container.decode(container.streams.audio[0]):
        frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_setup != setup:
            if convert is not None:
                yield from convert(None)
            convert, setup = _Converter(frame.layout.nb_channels, sample_rate, channels), frame_setup
        yield from convert(frame)
    if convert is not None:
        yield from convert(None)


def stream(path: str | os.PathLike, sample_rate: int, channels: int, block_frames: int = 65536) -> Iterator[np.ndarray]:
    """Yield int16 blocks of ``block_frames`` frames (the last one shorter), shaped (frames, channels).

    Rate and channels are converted by FFmpeg while decoding: more channels are down-mixed, mono is
    duplicated to stereo. Raises DecodeError when the file holds no usable audio, when its rate is not
    one audio uses, and (after the blocks before the last) when it stops short of its declared length.
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels}")
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise DecodeError(path, "no audio stream")
        audio = container.streams.audio[0]
        if audio.rate <= 0 or audio.channels <= 0:
            raise DecodeError(path, "not an audio file or unsupported format: no sample rate or channels found")
        if reason := check_rate(audio.rate) or check_clock(container):
            raise DecodeError(path, reason)
        block, filled, total = np.empty((block_frames, channels), np.int16), 0, 0
        try:
            for pcm in _pcm(container, sample_rate, channels):
                while len(pcm):
                    n = min(len(pcm), block_frames - filled)
                    block[filled : filled + n] = pcm[:n]  # broadcasts a mono column to both channels
                    filled, total, pcm = filled + n, total + n, pcm[n:]
                    if filled == block_frames:
                        yield block
                        block, filled = np.empty_like(block), 0
        except av.FFmpegError as err:
            raise DecodeError(path, f"corrupt audio data: {_why(err)}") from err
        if total == 0:
            raise DecodeError(path, "no samples after decoding")
        if reason := cut_short(path, container, total / sample_rate):
            raise DecodeError(path, reason)
        if filled:
            yield block[:filled]


def audible(
    path: str | os.PathLike, sample_rate: int, channels: int, block_frames: int = 65536
) -> Iterator[np.ndarray]:
    """``stream``, raising DecodeError after the last block when the whole file was digital silence.

    Every reader (the cache, prediction, ``decode``) goes through here, so a silent file is refused
    the same way everywhere, without holding the file in memory to find out.
    """
    peak = 0
    for block in stream(path, sample_rate, channels, block_frames):
        peak = max(peak, block_peak(block))
        yield block
    require_audible(path, peak)


def require_audible(path: str | os.PathLike, peak: int) -> None:
    """Raise DecodeError when an int16 peak magnitude is below ``SILENCE_DBFS`` (digital silence)."""
    level = 20.0 * math.log10(peak / FULL_SCALE) if peak > 0 else -math.inf
    if level < SILENCE_DBFS:
        raise DecodeError(path, f"silent (peak {level:.1f} dBFS)")


def block_peak(block: np.ndarray) -> int:
    """Largest sample magnitude of an int16 block (without the int16 overflow of abs(-32768))."""
    return max(int(block.max()), -int(block.min())) if block.size else 0


def decode(path: str | os.PathLike, sample_rate: int, channels: int) -> np.ndarray:
    """The whole file as float32 ``[channels, samples]`` in [-1, 1); silent files raise DecodeError."""
    pcm = np.concatenate(list(audible(path, sample_rate, channels)))
    return pcm_to_float(pcm)


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """Container and stream metadata (``artist``, ``title``...) with lower-cased keys; {} if none."""
    with _open(Path(path)) as container:
        tags: dict[str, str] = {}
        for metadata in [s.metadata for s in container.streams.audio] + [container.metadata]:
            tags.update({str(k).lower(): str(v) for k, v in metadata.items()})
        return tags
