"""cache.py: decode once, key by content and decoding parameters, survive kill -9 and concurrent builds."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import metalcore.audio.cache as cache_module
from metalcore.audio.cache import AudioCache, CachedTrack, write_skipped
from metalcore.audio.decode import DecodeError, decode
from metalcore.audio.encode import write_audio

SR = 22050

# A build in a separate process whose decoding is slowed down, so it can be killed or raced.
BUILD_SCRIPT = f"""
import json, sys, time
from pathlib import Path
import metalcore.audio.cache as cache

real_stream = cache.audible
def slow_stream(path, sample_rate, channels, block_frames=65536):
    for block in real_stream(path, sample_rate, channels, block_frames=2048):
        time.sleep(float(sys.argv[2]))
        yield block
cache.audible = slow_stream

root, delay, *sources = sys.argv[1:]
SR = {SR}
result = cache.AudioCache(Path(root), SR, 2).build([Path(s) for s in sources], workers=1)
print(json.dumps({{"decoded": result.decoded, "tracks": len(result.tracks)}}))
"""


def noise(seconds: float, seed: int, rate: int = 44100) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal((2, int(seconds * rate)))).astype(np.float32)


@pytest.fixture
def library(tmp_path) -> list[Path]:
    folder = tmp_path / "lib"
    folder.mkdir()
    return [
        write_audio(folder / f"track{i}{suffix}", noise(1.0, i), 44100, tags={"artist": f"band{i}"})
        for i, suffix in enumerate([".wav", ".flac", ".mp3"])
    ]


def start_build(root: Path, sources: list[Path], delay: float) -> subprocess.Popen:
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(root), str(delay), *map(str, sources)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def assert_valid(track: CachedTrack) -> None:
    """The entry holds what decoding the source gives now (int16 vs float: within one step)."""
    samples = track.open()
    assert samples.shape == (track.frames, track.channels)
    expected = decode(track.source, track.sample_rate, track.channels)
    assert np.abs(samples.T / 32768.0 - expected).max() <= 1 / 32768


def test_build_decodes_once(tmp_path, library):
    cache = AudioCache(tmp_path / "cache", SR, 2)
    first = cache.build(library, workers=1)
    assert first.decoded == 3 and not first.skipped and list(first.tracks) == library
    second = cache.build(library, workers=1)
    assert second.decoded == 0 and second.tracks == first.tracks
    for source, track in second.tracks.items():
        assert track.source == source.resolve() and track.path.parent == tmp_path / "cache" / f"{SR}hz-2ch"
        assert track.frames == SR and track.duration == pytest.approx(1.0)
        assert track.tags["artist"] == f"band{library.index(source)}"
        assert_valid(track)


def test_lookup_and_get(tmp_path, library):
    cache = AudioCache(tmp_path / "cache", SR, 2)
    assert cache.lookup(library[2]) is None
    track = cache.get(library[2])
    assert cache.lookup(library[2]) == track
    assert track.frames == decode(library[2], SR, 2).shape[1]
    assert_valid(track)
    with pytest.raises(DecodeError, match="file not found"):
        cache.get(tmp_path / "missing.mp3")


def test_a_warm_build_opens_no_audio_and_starts_no_workers(tmp_path, monkeypatch):
    """What makes a warm build cheap (its speed is python -m metalcore.bench's to measure): every
    source is only looked up, so nothing is decoded and no worker pool is started."""
    sources = [write_audio(tmp_path / f"{i}.wav", noise(0.05, i, SR), SR) for i in range(20)]
    cache = AudioCache(tmp_path / "cache", SR, 2)
    assert cache.build(sources, workers=1).decoded == 20

    def refuse(*args, **kwargs):
        raise AssertionError("a warm build decoded audio or started worker processes")

    monkeypatch.setattr(cache_module, "audible", refuse)
    monkeypatch.setattr(cache_module, "ProcessPoolExecutor", refuse)
    result = cache.build(sources, workers=4)
    assert result.decoded == 0 and list(result.tracks) == sources and not result.skipped


def test_key_follows_rate_channels_and_content_not_mtime(tmp_path, library):
    root = tmp_path / "cache"
    stereo = AudioCache(root, SR, 2)
    stereo.build(library, workers=1)
    # another rate or channel count: separate entries, decoded again; the first ones stay valid
    for other in (AudioCache(root, 16000, 2), AudioCache(root, SR, 1)):
        result = other.build(library, workers=1)
        assert result.decoded == 3
        assert all(t.path.parent == other.folder and t.sample_rate == other.sample_rate for t in result.tracks.values())
    assert stereo.build(library, workers=1).decoded == 0
    # touched but identical: still cached
    stat = library[0].stat()
    os.utime(library[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert stereo.lookup(library[0]) is not None
    assert stereo.build(library, workers=1).decoded == 0
    # new content: decoded again, to the new samples
    write_audio(library[1], noise(2.0, 99), 44100)
    assert stereo.lookup(library[1]) is None
    result = stereo.build(library, workers=1)
    assert result.decoded == 1 and result.tracks[library[1]].frames == 2 * SR
    assert_valid(result.tracks[library[1]])


def test_bad_files_are_skipped_with_reasons(tmp_path, library):
    empty = tmp_path / "empty.flac"
    empty.touch()
    text = tmp_path / "readme.mp3"
    text.write_text("not audio\n" * 50)
    silent = write_audio(tmp_path / "silent.wav", np.zeros((2, SR), np.float32), SR)
    sources = [empty, library[0], text, silent, tmp_path / "gone.ogg", library[1]]
    result = AudioCache(tmp_path / "cache", SR, 2).build(sources, workers=1)
    assert list(result.tracks) == [library[0], library[1]] and result.decoded == 2
    reasons = dict(result.skipped)
    assert list(reasons) == [empty, text, silent, tmp_path / "gone.ogg"]
    assert reasons[empty] == "empty file (0 bytes)"
    assert reasons[text].startswith("not an audio file")
    assert reasons[silent].startswith("silent")
    assert reasons[tmp_path / "gone.ogg"] == "file not found"
    assert not list((tmp_path / "cache" / f"{SR}hz-2ch").glob("*.pcm*.tmp"))  # failed decodes leave nothing

    csv_path = tmp_path / "reports" / "skipped.csv"
    write_skipped(csv_path, result.skipped)
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "reason"]
    assert rows[1:] == [[str(path), reason] for path, reason in result.skipped]
    assert os.listdir(csv_path.parent) == ["skipped.csv"]


def test_kill_during_build_leaves_no_valid_entry_and_next_build_resumes(tmp_path):
    source = write_audio(tmp_path / "long.flac", noise(3.0, 7), 44100)
    cache = AudioCache(tmp_path / "cache", SR, 2)
    proc = start_build(cache.root, [source], delay=0.05)
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 0 for p in cache.folder.glob("*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, "build ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert list(cache.folder.glob("*.tmp")) and not list(cache.folder.glob("*.json"))
    assert cache.lookup(source) is None
    result = cache.build([source], workers=1)
    assert result.decoded == 1 and not result.skipped
    assert_valid(result.tracks[source])
    assert not list(cache.folder.glob("*.tmp"))  # the dead writer's temp file is gone


def test_concurrent_builds_decode_each_source_once(tmp_path):
    sources = [write_audio(tmp_path / f"{i}.flac", noise(1.0, i), 44100) for i in range(4)]
    root = tmp_path / "cache"
    builds = [start_build(root, sources, 0.02), start_build(root, sources[::-1], 0.02)]
    reports = [json.loads(proc.communicate(timeout=60)[0]) for proc in builds]
    assert all(r["tracks"] == 4 for r in reports)
    assert sum(r["decoded"] for r in reports) == 4
    cache = AudioCache(root, SR, 2)
    for source in sources:
        assert_valid(cache.lookup(source))
    assert len(list(cache.folder.glob("*.json"))) == 4 and not list(cache.folder.glob("*.tmp"))


def test_process_pool_build(tmp_path, library):
    cache = AudioCache(tmp_path / "cache", SR, 2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(100))
    result = cache.build([*library, bad], workers=2)
    assert result.decoded == 3 and list(result.tracks) == library
    assert [path for path, _ in result.skipped] == [bad]
    for track in result.tracks.values():
        assert_valid(track)


def _build_and_load(root: Path, sources: list[Path]) -> tuple[int, int]:
    """A job's data path with worker processes: decode (a pool of 2), then read clips (2 DataLoader workers)."""
    from torch.utils.data import DataLoader

    from metalcore.core.processes import loader_workers
    from metalcore.data.segments import SegmentDataset

    tracks = list(AudioCache(root, SR, 2).build(sources, workers=2).tracks.values())
    clips = SegmentDataset(
        paths=np.array([str(t.path) for t in tracks]), frames=np.array([t.frames for t in tracks]),
        labels=np.zeros(len(tracks), dtype=np.int64), channels=2, length=SR // 4,
    )  # fmt: skip
    workers, context = loader_workers(2)
    keys = [(track, 0) for track in range(len(tracks))]  # each track's first clip
    loaded = DataLoader(clips, batch_size=1, sampler=keys, num_workers=workers, multiprocessing_context=context)
    return len(tracks), sum(len(batch[0]) for batch in loaded)


def test_a_job_of_a_joblib_sweep_decodes_and_loads_its_library(tmp_path, library):
    """hydra/launcher=joblib runs each job in a loky worker, where the decoding pool and the DataLoader's
    workers died at their first task ("cannot find context for 'loky'")."""
    from joblib import Parallel, delayed

    (outcome,) = Parallel(n_jobs=2, backend="loky")(delayed(_build_and_load)(tmp_path / "cache", library) for _ in [0])
    assert outcome == (len(library), len(library))


def test_old_temp_files_are_removed(tmp_path, library):
    cache = AudioCache(tmp_path / "cache", SR, 2)
    cache.folder.mkdir(parents=True)
    old, recent = cache.folder / "dead.pcm.1.ab.tmp", cache.folder / "live.pcm.2.cd.tmp"
    old.write_bytes(b"x")
    recent.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cache.build(library[:1], workers=1)
    assert not old.exists() and recent.exists()


def test_decoding_workers_exit_when_their_build_is_killed(tmp_path):
    """kill -9 of prepare (or of train while decoding) left its pool's workers waiting forever."""
    sources = [write_audio(tmp_path / f"{i}.flac", noise(2.0, i), 44100) for i in range(30)]
    script = BUILD_SCRIPT.replace("workers=1", "workers=2")
    repo = str(Path(__file__).resolve().parents[1])
    build = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "cache"), "0", *map(str, sources)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": repo},
    )
    parent = psutil.Process(build.pid)
    deadline = time.monotonic() + 60
    while len(workers := [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]) < 2:
        assert build.poll() is None and time.monotonic() < deadline, "the build ended before its pool started"
        time.sleep(0.05)
    build.kill()
    build.wait()
    alive = [p for p in psutil.wait_procs(workers, timeout=10)[1] if not zombie(p)]
    for p in alive:
        p.kill()  # leave nothing behind even when the test fails
    assert not alive, f"{len(alive)} decoding workers outlived their parent"


def zombie(process: psutil.Process) -> bool:
    """Dead but not reaped (its new parent may never wait for it): gone for this test's purpose."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
