"""Cut-off downloads and forged headers are skipped with a reason, never cached as short or huge tracks."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from metalcore.audio.cache import AudioCache
from metalcore.audio.decode import DecodeError, decode
from metalcore.audio.encode import write_audio
from metalcore.data.demo import render_track

RATE = 22050
SECONDS = 20.0
# what the reason says per format: Ogg declares its length only in the last page, which a cut removes
TRUNCATED = {
    "ogg": r"truncated: decoded 0:0\d, the Ogg stream stops mid-page",
    "opus": r"truncated: decoded 0:0\d, the Ogg stream stops mid-page",
    "mp3": r"truncated: decoded 0:0\d of 0:20",
    "wav": r"truncated: decoded 0:0\d of 0:20",
    "flac": r"corrupt audio data|truncated: decoded 0:0\d of 0:20",
}


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return render_track("metal", np.random.default_rng(3), SECONDS, RATE)


@pytest.mark.parametrize("suffix", TRUNCATED)
def test_a_cut_off_file_is_refused_as_truncated_and_the_whole_one_decodes(tmp_path, song, suffix):
    whole = write_audio(tmp_path / f"whole.{suffix}", song, RATE)
    assert decode(whole, 16000, 2).shape[1] == pytest.approx(SECONDS * 16000, rel=0.01)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with pytest.raises(DecodeError, match=TRUNCATED[suffix]):
        decode(cut, 16000, 2)


@pytest.mark.parametrize("suffix", ["ogg", "opus"])
def test_an_ogg_file_with_pages_lost_mid_stream_is_refused_as_damaged(tmp_path, song, suffix):
    """FFmpeg drops an Ogg page whose checksum fails and decodes on: the hole is found against the
    length the last page declares."""
    whole = write_audio(tmp_path / f"whole.{suffix}", song, RATE)
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    for k in range(12):  # one flipped byte every 2 KB over 24 KB: a dozen pages fail their checksum
        data[middle + 2048 * k] ^= 0xFF
    holed = tmp_path / f"holed.{suffix}"
    holed.write_bytes(bytes(data))
    assert decode(whole, 16000, 2).shape[1] == pytest.approx(SECONDS * 16000, rel=0.01)
    with pytest.raises(DecodeError, match=r"damaged: decoded 0:1\d of 0:20; Ogg pages lost mid-stream"):
        decode(holed, 16000, 2)


def ogg_page_starts(data: bytes) -> list[int]:
    starts, i = [], data.find(b"OggS")
    while i >= 0:
        starts.append(i)
        i = data.find(b"OggS", i + 1)
    return starts


@pytest.mark.parametrize("suffix", ["ogg", "opus"])
def test_an_ogg_file_cut_at_a_page_boundary_is_refused_as_truncated(tmp_path, song, suffix):
    """Every page is whole, but the last one lacks the end-of-stream flag that closes a finished file."""
    whole = write_audio(tmp_path / f"whole.{suffix}", song, RATE)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: ogg_page_starts(data)[len(ogg_page_starts(data)) // 2]])
    with pytest.raises(DecodeError, match=r": truncated: decoded 0:\d\d; the Ogg stream ends without its last page"):
        decode(cut, 16000, 2)


@pytest.mark.parametrize("suffix", ["ogg", "opus"])
def test_an_ogg_file_whose_last_page_declares_too_much_is_not_called_damaged(tmp_path, song, suffix):
    """A forged granule position in an intact stream: the length is wrong, no page was lost."""
    whole = write_audio(tmp_path / f"whole.{suffix}", song, RATE)
    data = bytearray(whole.read_bytes())
    last = ogg_page_starts(bytes(data))[-1]
    granule = struct.unpack("<q", data[last + 6 : last + 14])[0]
    data[last + 6 : last + 14] = struct.pack("<q", granule * 3)
    data[last + 22 : last + 26] = struct.pack("<I", ogg_crc(bytes(data[last:])))
    forged = tmp_path / f"forged.{suffix}"
    forged.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r": damaged: its last Ogg page declares 1:00 but every page is intact"):
        decode(forged, 16000, 2)


def ogg_crc(page: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, unreflected, no final xor), written out bit by bit."""
    page = page[:22] + b"\0\0\0\0" + page[26:]
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def test_a_truncated_file_is_listed_and_retried_once_complete(tmp_path, song):
    (tmp_path / "lib").mkdir()
    whole = write_audio(tmp_path / "lib" / "Band - Song.mp3", song, RATE)
    complete = whole.read_bytes()
    whole.write_bytes(complete[:20000])  # the first 20 KB of the download
    cache = AudioCache(tmp_path / "cache", 16000, 2)
    result = cache.build([whole], workers=1)
    assert not result.tracks and [(p, r.split(":")[0]) for p, r in result.skipped] == [(whole, "truncated")]
    assert not list((tmp_path / "cache").rglob("*.pcm"))
    whole.write_bytes(complete)  # the download finished
    result = cache.build([whole], workers=1)
    assert result.tracks[whole].duration == pytest.approx(SECONDS, rel=0.01) and not result.skipped


def wav_header(rate: int, data_bytes: int, channels: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data_bytes))
    )


@pytest.mark.parametrize("rate", [1, 1000, 3_000_000])
def test_a_sample_rate_no_audio_uses_is_refused_before_decoding(tmp_path, rate):
    """A 12 KB WAV claiming 1 Hz became a 51-minute, 252 MB cache entry."""
    noise = (np.random.default_rng(0).standard_normal(6000) * 3000).astype("<i2").tobytes()
    path = tmp_path / "forged.wav"
    path.write_bytes(wav_header(rate, len(noise)) + noise)
    with pytest.raises(DecodeError, match=rf"implausible sample rate {rate} Hz \(audio uses 4000 to 768000 Hz\)"):
        decode(path, 16000, 2)
    result = AudioCache(tmp_path / "cache", 16000, 2).build([path], workers=1)
    assert not result.tracks and not list(Path(tmp_path / "cache").rglob("*.pcm"))


def test_a_wav_written_by_a_recorder_that_never_filled_in_its_size_still_decodes(tmp_path):
    noise = (np.random.default_rng(0).standard_normal(16000) * 3000).astype("<i2").tobytes()
    path = tmp_path / "live.wav"
    path.write_bytes(wav_header(16000, 0) + noise)
    assert decode(path, 16000, 1).shape[1] == 16000


def mp4_boxes(data: bytes) -> dict[bytes, int]:
    """Top-level MP4 boxes: type -> offset."""
    boxes, offset = {}, 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes[kind], offset = offset, offset + size
    return boxes


def test_an_m4a_cut_before_its_index_at_the_end_is_called_truncated(tmp_path, song):
    whole = write_audio(tmp_path / "whole.m4a", song, RATE)
    data = whole.read_bytes()
    assert mp4_boxes(data)[b"moov"] > mp4_boxes(data)[b"mdat"]  # the index after the audio, as FFmpeg writes it
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r": truncated: the MP4 file stops in its audio data, before its index"):
        decode(cut, 16000, 2)


def test_an_m4a_whose_clock_runs_at_1_hz_is_refused_as_forged_not_truncated(tmp_path, song):
    data = bytearray(write_audio(tmp_path / "whole.m4a", song, RATE).read_bytes())
    header = data.find(b"mdhd")
    timescale = header + 4 + 4 + (8 if data[header + 4] == 0 else 16)  # after version, flags and the two dates
    data[timescale : timescale + 4] = struct.pack(">I", 1)
    forged = tmp_path / "forged.m4a"
    forged.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r": implausible MP4 time scale 1 Hz \(an audio track counts time"):
        decode(forged, 16000, 2)
