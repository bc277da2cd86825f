"""decode.py: every format to int16/float at a rate and channel count; every bad file a DecodeError."""

from __future__ import annotations

import pickle
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from metalcore.audio.decode import AUDIO_SUFFIXES, DecodeError, decode, read_tags, stream
from metalcore.audio.encode import write_audio

SR = 22050


def tone(freqs: list[float], seconds: float = 1.0, rate: int = 44100, level: float = 0.5) -> np.ndarray:
    """float32 [len(freqs), samples]: one sine per channel."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([level * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def write_wav_int16(path: Path, pcm: np.ndarray, rate: int) -> Path:
    """Plain PCM WAV (no channel mask) from int16 (frames, channels), via the stdlib."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return path


def test_suffixes():
    assert {".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus"} == AUDIO_SUFFIXES


@pytest.mark.parametrize(
    "name, codec",
    [
        ("a.wav", None),
        ("a.flac", None),
        ("a.mp3", None),
        ("aac.m4a", None),
        ("alac.m4a", "alac"),
        ("a.ogg", None),
        ("a.opus", None),
        ("UPPER.MP3", None),
        ("UPPER.FLAC", None),
    ],
)
def test_formats_decode_to_rate_and_channels(tmp_path, name, codec):
    path = write_audio(tmp_path / name, tone([440, 660]), 44100, codec=codec)
    audio = decode(path, SR, 2)
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    assert abs(audio.shape[1] / SR - 1.0) < 0.06  # codec priming/padding only
    assert audio.min() >= -1.0 and audio.max() < 1.0
    assert dominant_hz(audio[0], SR) == pytest.approx(440, abs=3)
    assert dominant_hz(audio[1], SR) == pytest.approx(660, abs=3)
    mono = decode(path, SR, 1)
    assert mono.shape == (1, audio.shape[1])


def test_stream_blocks(tmp_path):
    path = write_audio(tmp_path / "a.flac", tone([440, 660]), 44100)
    blocks = list(stream(path, SR, 2, block_frames=1000))
    assert all(b.dtype == np.int16 and b.shape == (1000, 2) for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= 1000 and sum(map(len, blocks)) == SR
    assert np.array_equal(np.concatenate(blocks).T / 32768.0, decode(path, SR, 2))


def test_mono_is_duplicated_to_stereo_at_full_level(tmp_path):
    path = write_audio(tmp_path / "mono.wav", tone([440]), 44100)
    audio = decode(path, 44100, 2)
    assert np.array_equal(audio[0], audio[1])
    assert np.abs(audio).max() == pytest.approx(0.5, abs=1e-3)  # not FFmpeg's -3 dB up-mix


def test_stereo_to_mono_mixes_both_channels(tmp_path):
    path = write_audio(tmp_path / "st.wav", tone([440, 1000]), 44100)
    mono = decode(path, SR, 1)[0]
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(len(mono), 1 / SR)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([440, 1000], abs=2)


def test_51_downmix_to_stereo_keeps_sides(tmp_path):
    audio = np.zeros((6, 44100), np.float32)
    audio[0] = tone([440])[0]  # front left only
    path = write_audio(tmp_path / "surround.flac", audio, 44100)
    stereo = decode(path, SR, 2)
    left, right = np.sqrt((stereo**2).mean(axis=1))
    assert left > 0.1 and right < 0.01 * left
    assert dominant_hz(stereo[0], SR) == pytest.approx(440, abs=3)


def test_unmappable_layout_is_averaged(tmp_path):
    # 9 unlabelled channels: FFmpeg has no down-mix for them, so channels are averaged
    pcm = np.tile(np.arange(1, 10, dtype=np.int16) * 1000, (SR, 1))
    path = write_wav_int16(tmp_path / "nine.wav", pcm, SR)
    for channels in (1, 2):
        audio = decode(path, SR, channels)
        assert audio.shape == (channels, SR)
        assert np.allclose(audio[:, 100] * 32768, 5000, atol=2)


@pytest.mark.parametrize("rate_in, rate_out", [(48000, 44100), (22050, 44100), (44100, 16000)])
def test_resampling_length(tmp_path, rate_in, rate_out):
    path = write_audio(tmp_path / "r.wav", tone([440, 440], 2.0, rate_in), rate_in)
    audio = decode(path, rate_out, 2)
    assert abs(audio.shape[1] - 2 * rate_out) <= 2
    assert dominant_hz(audio[0], rate_out) == pytest.approx(440, abs=2)


def _assert_decode_error(path: Path, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(path, SR, 2)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert info.value.path == path and reason in info.value.reason


def test_bad_files_raise_decode_error(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    _assert_decode_error(empty, "empty file (0 bytes)")
    _assert_decode_error(tmp_path / "missing.flac", "file not found")
    folder = tmp_path / "album.flac"
    folder.mkdir()
    _assert_decode_error(folder, "cannot read file")
    text = tmp_path / "notes.mp3"
    text.write_text("these are my notes, not a song\n" * 100)
    _assert_decode_error(text, "not an audio file")
    rng = np.random.default_rng(0)
    for suffix in AUDIO_SUFFIXES:
        noise = tmp_path / f"random{suffix}"
        noise.write_bytes(rng.bytes(20000))
        _assert_decode_error(noise, "not an audio file")
    zero = write_wav_int16(tmp_path / "zero.wav", np.zeros((0, 2), np.int16), SR)
    _assert_decode_error(zero, "no samples after decoding")
    silent = write_audio(tmp_path / "silent.flac", np.zeros((2, SR), np.float32), SR)
    _assert_decode_error(silent, "silent (peak -inf dBFS)")


def test_video_only_file_has_no_audio_stream(tmp_path):
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        for pts in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = pts
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    _assert_decode_error(path, "no audio stream")


# What FFmpeg makes of each damage (a cut at 2/5 of the file, or its middle third overwritten): the
# seconds it still decodes, or the start of the one-line reason. Either way, never another exception.
DAMAGED = {
    ("truncated", ".flac"): "corrupt audio data",
    ("truncated", ".mp3"): "truncated: decoded 0:01 of 0:03",  # shorter than its Xing header declares
    ("truncated", ".wav"): "truncated: decoded 0:01 of 0:03",  # shorter than its data chunk declares
    ("truncated", ".ogg"): "not an audio file or unsupported format",
    ("truncated", ".m4a"): "truncated: the MP4 file stops in its audio data, before its index (moov)",
    ("corrupted", ".flac"): "truncated: decoded 0:02 of 0:03",  # the frames before the damage, then nothing
    ("corrupted", ".mp3"): "corrupt audio data",
    ("corrupted", ".wav"): 3.0,  # PCM has no structure to break: the noise is decoded as audio
    ("corrupted", ".ogg"): "damaged: decoded 0:01 of 0:03",  # pages that fail their checksum are dropped
    ("corrupted", ".m4a"): "corrupt audio data",
}


@pytest.mark.parametrize(("damage", "suffix"), DAMAGED, ids=[d + s for d, s in DAMAGED])
def test_damaged_files_decode_what_is_left_or_raise_one_decode_error(tmp_path, damage, suffix):
    path = write_audio(tmp_path / f"{damage}{suffix}", tone([440, 660], 3.0), 44100)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 5]
    else:
        third = len(data) // 3
        data[third : 2 * third] = np.random.default_rng(1).bytes(third)
    path.write_bytes(bytes(data))
    expected = DAMAGED[damage, suffix]
    if isinstance(expected, str):
        with pytest.raises(DecodeError) as err:  # any other exception fails the test
            decode(path, SR, 2)
        assert str(err.value).startswith(f"{path}: ") and err.value.reason.startswith(expected)
    else:
        audio = decode(path, SR, 2)
        assert audio.shape[0] == 2 and audio.shape[1] / SR == pytest.approx(expected, abs=0.1)


def test_error_after_some_blocks_is_a_decode_error(tmp_path):
    # FFmpeg's FLAC decoder fails on the cut-off last frame, after the whole frames before it
    path = write_audio(tmp_path / "cut.flac", tone([440, 660], 3.0), 44100)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    blocks = []
    with pytest.raises(DecodeError, match="corrupt audio data"):
        for block in stream(path, SR, 2, block_frames=1000):
            blocks.append(block)
    assert blocks  # the failure came mid-way, not on opening


def test_decode_error_is_one_line_and_picklable(tmp_path):
    err = DecodeError(tmp_path / "x.mp3", "corrupt audio data:\nInvalid data")
    assert str(err) == f"{tmp_path / 'x.mp3'}: corrupt audio data: Invalid data"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason) == (err.path, err.reason)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"])
def test_read_tags(tmp_path, suffix):
    # stereo: FFmpeg's own vorbis encoder writes two channels only
    path = write_audio(
        tmp_path / f"t{suffix}", tone([440, 660], 0.5), 44100, tags={"artist": "Converge", "TITLE": "Jane Doe"}
    )
    tags = read_tags(path)
    assert tags["artist"] == "Converge"
    assert all(key == key.lower() for key in tags)


def test_read_tags_without_tags_and_on_bad_files(tmp_path):
    path = write_wav_int16(tmp_path / "plain.wav", np.ones((100, 1), np.int16), SR)
    assert "artist" not in read_tags(path)
    with pytest.raises(DecodeError):
        read_tags(tmp_path / "missing.wav")
