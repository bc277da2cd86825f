"""Is a decodable file the whole recording, at a rate audio uses? Cut-off downloads and forged headers.

FFmpeg decodes what is there without complaint: the first 20 KB of a 3-minute Ogg file is a 0.6 s
track, and a WAV header claiming 1 Hz turns 12 KB into 51 minutes of samples. A file is compared
with the length its container declares (FLAC's STREAMINFO, an MP3's Xing/Info/VBRI header, MP4's
moov, a WAV's data chunk size); an Ogg file (Vorbis, Opus, FLAC) declares its length only in its
last page, so there the last page itself must be whole and carry the end-of-stream flag (a file cut
at a page boundary has whole pages only), and the decoded audio must reach the length that page
declares: FFmpeg drops a page that fails its CRC without an error, leaving a hole. A file whose
pages are all intact but whose last page declares more than they hold has a wrong length, not a hole.
"""

from __future__ import annotations

import binascii
import struct
from pathlib import Path

import av

MIN_RATE, MAX_RATE = 4000, 768000  # telephone speech to the highest studio rates
COMPLETE = 0.9  # decoded length below this share of the declared one: the file was cut off
MIN_MP4_CLOCK = 1000  # Hz: a coarser clock cannot time audio frames (1,024 samples are ~21 ms)
OGG_MAX_PAGE = 27 + 255 + 255 * 255
OGG_END_OF_STREAM = 0x04  # header-type flag of a stream's last page (RFC 3533)
OGG_SLACK = 0.25  # seconds: Opus pre-skip and end trimming are milliseconds; a lost page is longer


def check_rate(rate: int) -> str | None:
    """Why a stream's sample rate cannot be audio, or None."""
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"implausible sample rate {rate} Hz (audio uses {MIN_RATE} to {MAX_RATE} Hz)"
    return None


def check_clock(container: av.container.InputContainer) -> str | None:
    """Why an MP4 audio track's time scale cannot be real (a forged header), or None.

    The time scale is the track's clock; muxers set it to the sample rate. At 1 Hz every packet's
    timestamp rounds to whole seconds and FFmpeg drops nearly all of the audio, which would
    otherwise read as a cut-off file.
    """
    if "mp4" not in container.format.name.split(","):
        return None
    time_base = container.streams.audio[0].time_base
    scale = round(1 / time_base) if time_base else 0
    if 0 < scale < MIN_MP4_CLOCK:
        return (
            f"implausible MP4 time scale {scale} Hz (an audio track counts time in its sample rate, "
            f"at least {MIN_MP4_CLOCK} Hz): a forged or damaged header"
        )
    return None


def mp4_cut_before_index(path: Path) -> str | None:
    """Why an MP4 file FFmpeg cannot open is a cut-off download, or None.

    FFmpeg writes the index (``moov``) after the audio (``mdat``); a download stopped before the
    end loses the index, and FFmpeg sees only "invalid data".
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        offset, kinds = 0, []
        while offset + 8 <= size:
            f.seek(offset)
            length, kind = struct.unpack(">I4s", f.read(8))
            if length == 1:  # a 64-bit size follows the type
                length = struct.unpack(">Q", f.read(8))[0]
            if length < 8:
                return None
            kinds.append(kind)
            offset += length
    if not kinds or kinds[0] != b"ftyp" or b"moov" in kinds or offset <= size:
        return None
    inside = "its audio data" if kinds[-1] == b"mdat" else f"its '{kinds[-1].decode('latin-1')}' box"
    return f"truncated: the MP4 file stops in {inside}, before its index (moov) at the end; the download did not finish"


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def declared_seconds(path: Path, container: av.container.InputContainer) -> float | None:
    """The length the file says it has, where that is a statement and not FFmpeg's estimate; else None."""
    name = container.format.name
    if name == "wav":
        return _wav_seconds(path)
    if "ogg" in name.split(","):
        return None  # see ogg_cut_short
    if name == "mp3" and not _has_mp3_length_header(path):
        return None  # a CBR file without a header: FFmpeg estimates from its size, which a cut shrinks too
    stream = container.streams.audio[0]
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def cut_short(path: Path, container: av.container.InputContainer, decoded_seconds: float) -> str | None:
    """Why the decoded audio is not the whole file (``truncated: decoded 0:01 of 3:05``), or None."""
    if "ogg" in container.format.name.split(","):
        last = _ogg_last_page(path)
        if last is None:
            return f"truncated: decoded {clock(decoded_seconds)}, the Ogg stream stops mid-page"
        if not last[5] & OGG_END_OF_STREAM:  # cut at a page boundary: every page whole, the last one missing
            return f"truncated: decoded {clock(decoded_seconds)}; the Ogg stream ends without its last page"
        declared = _ogg_seconds(last, container.streams.audio[0])
        if declared and decoded_seconds < declared - OGG_SLACK:
            if _ogg_pages_intact(path):
                return (
                    f"damaged: its last Ogg page declares {clock(declared)} but every page is intact and "
                    f"holds {clock(decoded_seconds)}: the length written in the file is wrong"
                )
            return (
                f"damaged: decoded {clock(decoded_seconds)} of {clock(declared)}; "
                "Ogg pages lost mid-stream (checksum errors)"
            )
        return None
    declared = declared_seconds(path, container)
    if declared and decoded_seconds < COMPLETE * declared:
        return f"truncated: decoded {clock(decoded_seconds)} of {clock(declared)}"
    return None


def _wav_seconds(path: Path) -> float | None:
    """The data chunk's declared size over the byte rate (FFmpeg clamps it to what the file holds)."""
    with open(path, "rb") as f:
        header = f.read(4096)
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(header):
        chunk, size = header[offset : offset + 4], struct.unpack("<I", header[offset + 4 : offset + 8])[0]
        if chunk == b"fmt " and offset + 16 <= len(header):
            byte_rate = struct.unpack("<I", header[offset + 16 : offset + 20])[0]
        if chunk == b"data":
            streaming = size in (0, 0xFFFFFFFF)  # written by a recorder that never went back to fill it in
            return size / byte_rate if byte_rate and not streaming else None
        offset += 8 + size + (size & 1)
    return None


def _has_mp3_length_header(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(16384)
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


def _ogg_last_page(path: Path) -> bytes | None:
    """The last Ogg page's header, or None when that page stops before the end its header announces."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - OGG_MAX_PAGE))
        tail = f.read()
    start = tail.rfind(b"OggS")
    if start < 0 or len(tail) - start < 27:
        return None
    segments = tail[start + 26]
    table = tail[start + 27 : start + 27 + segments]
    if len(table) < segments or start + 27 + segments + sum(table) > len(tail):
        return None
    return tail[start : start + 27]


def _ogg_seconds(header: bytes, stream: av.audio.stream.AudioStream) -> float | None:
    """The length a last page declares: its granule position, in samples at the codec's rate (48 kHz for
    Opus). A chained file declares only its last link, which the whole decoding always exceeds."""
    granule = struct.unpack("<q", header[6:14])[0]
    rate = 48000 if stream.codec_context.name == "opus" else stream.rate
    return granule / rate if granule > 0 and rate else None


_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32 (polynomial 0x04C11DB7) unreflected, initial value and final xor 0.

    zlib's CRC-32 is the reflected form; fed bit-reversed bytes, with its own initial and final
    inversions undone, it gives the bit-reversed Ogg checksum at C speed.
    """
    reflected = binascii.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_pages_intact(path: Path) -> bool:
    """Whether every page of the file is there, back to back, with a valid checksum and no gap in
    its stream's sequence numbers. Read only when the decoded length falls short of the declared one."""
    data = Path(path).read_bytes()
    offset, sequence = 0, {}
    while offset < len(data):
        if data[offset : offset + 4] != b"OggS" or offset + 27 > len(data):
            return False
        segments = data[offset + 26]
        end = offset + 27 + segments + sum(data[offset + 27 : offset + 27 + segments])
        page = data[offset:end]
        serial, number, crc = struct.unpack("<III", page[14:26])
        blank = page[:22] + b"\0\0\0\0" + page[26:]
        if end > len(data) or _ogg_crc(blank) != crc or sequence.get(serial, number - 1) != number - 1:
            return False
        sequence[serial], offset = number, end
    return True
