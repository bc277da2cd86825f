"""python -m metalcore.prepare on a real-looking library: every format, broken files, incremental refresh.

The library mixes formats, extension cases, rates, channel layouts and odd lengths with the broken
and system files real collections hold; the commands are the ones the README shows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_module

import metalcore.audio.cache as cache_module
from metalcore.audio.cache import AudioCache
from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError
from metalcore.data.catalogue import scan
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.split import Split

RATE = 16000  # the cache's rate in these tests: small and fast

# (class, file name, channels, source rate, seconds, codec): one of each format and layout
GOOD = [
    ("metal", "Band A - One.wav", 2, 44100, 1.234, None),
    ("metal", "Band A - Two.MP3", 2, 44100, 1.0, None),
    ("metal", "Band B - Three.flac", 6, 48000, 1.1, None),
    ("metal", "Band B - Four.m4a", 1, 22050, 0.9, None),
    ("hardcore", "Crew C - Five.m4a", 2, 48000, 1.0, "alac"),
    ("hardcore", "Crew C - Six.ogg", 2, 22050, 1.3, None),
    ("hardcore", "Crew D - Seven.opus", 1, 48000, 1.0, None),
    ("hardcore", "Crew D - Eight.Flac", 1, 22050, 0.777, None),
]
BROKEN = {
    "metal/empty.wav": "empty file (0 bytes)",
    "metal/notes.mp3": "not an audio file",
    "hardcore/cut.flac": "corrupt audio data",
    "hardcore/silent.wav": "silent",
}
IGNORED = [
    "metal/.DS_Store",
    "metal/._Band A - Two.MP3",
    "hardcore/Thumbs.db",
    "hardcore/desktop.ini",
    "metal/.hidden/Ghost - Track.wav",
    "notes/readme.txt",
]


def noise(channels: int, seconds: float, rate: int, seed: int) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal((channels, round(seconds * rate)))).astype(np.float32)


def make_good(root: Path, spec: tuple, seed: int) -> Path:
    label, name, channels, rate, seconds, codec = spec
    (root / label).mkdir(parents=True, exist_ok=True)
    return write_audio(root / label / name, noise(channels, seconds, rate, seed), rate, codec=codec)


def make_broken(root: Path) -> None:
    for label in ("metal", "hardcore"):
        (root / label).mkdir(parents=True, exist_ok=True)
    (root / "metal" / "empty.wav").touch()
    (root / "metal" / "notes.mp3").write_text("not a song\n" * 200)
    cut = write_audio(root / "hardcore" / "cut.flac", noise(2, 3.0, 44100, 99), 44100)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    write_audio(root / "hardcore" / "silent.wav", np.zeros((2, 44100), np.float32), 44100)


def make_ignored(root: Path) -> None:
    for name in IGNORED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\x00\x01system file")
    write_audio(root / "metal/.hidden/Ghost - Track.wav", noise(2, 0.5, 22050, 77), 22050)


def prepare_args(root: Path, cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
        f"data.sample_rate={RATE}",
        *extra,
    ]


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The per-class table of the printed summary: name -> [tracks, hours, h:mm:ss, skipped]."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) == 5 and re.fullmatch(r"\d+:\d\d:\d\d", cells[3]):
            rows[cells[0]] = cells[1:]
    return rows


def test_scan_ignores_system_and_hidden_files(tmp_path):
    for spec in GOOD[:2] + GOOD[4:6]:
        (tmp_path / spec[0]).mkdir(exist_ok=True)
        (tmp_path / spec[0] / spec[1]).write_bytes(b"x")
    make_ignored(tmp_path)
    found = {(t.label, t.path.name, t.artist) for t in scan(tmp_path)}
    assert found == {
        ("metal", "Band A - One.wav", "Band A"),
        ("metal", "Band A - Two.MP3", "Band A"),
        ("hardcore", "Crew C - Five.m4a", "Crew C"),
        ("hardcore", "Crew C - Six.ogg", "Crew C"),
    }


def test_prepare_reports_tracks_cache_and_skipped_files_then_refreshes_incrementally(tmp_path):
    root, cache = tmp_path / "music", tmp_path / "cache"
    sources = [make_good(root, spec, seed) for seed, spec in enumerate(GOOD)]
    make_broken(root)
    make_ignored(root)

    # first run: decodes every good file over all cores, names each bad one, ignores system files
    first = run_module("metalcore.prepare", *prepare_args(root, cache, tmp_path / "run1"))
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    rows = summary_rows(out)
    assert rows["metal"][0] == "4" and rows["hardcore"][0] == "4" and rows["total"][0] == "8"
    assert rows["metal"][3] == "2" and rows["hardcore"][3] == "2" and rows["total"][3] == "4"
    assert float(rows["total"][1]) == pytest.approx(sum(s[4] for s in GOOD) / 3600, abs=0.006)
    assert "decoded 8 tracks this time (0 already cached)" in out
    folder = cache / f"{RATE}hz-2ch"
    assert re.search(rf"cache: [\d.]+ (KiB|MiB) on disk in {re.escape(str(folder))}", out)
    assert f"skipped 4 files (listed in {folder / 'skipped.csv'}):" in out
    for name, reason in BROKEN.items():
        assert re.search(rf"^  {re.escape(str(root / name))}: {re.escape(reason)}", out, re.M), name
    assert "Ghost" not in out and "Thumbs" not in out and "DS_Store" not in out

    with open(folder / "skipped.csv", newline="") as f:
        listed = list(csv.DictReader(f))
    assert sorted(r["path"] for r in listed) == sorted(str(root / name) for name in BROKEN)
    assert all(r["reason"].startswith(BROKEN[str(Path(r["path"]).relative_to(root))]) for r in listed)
    # it also split the library as training would, into its run folder
    with open(tmp_path / "run1" / "split.csv", newline="") as f:
        assert sorted(Path(r["path"]).name for r in csv.DictReader(f)) == sorted(s[1] for s in GOOD)

    # the DataModule runs the same prepare: every file at the cache's rate, its own length
    def dm() -> MusicDataModule:
        return MusicDataModule(str(root), str(cache), sample_rate=RATE, workers_for_decoding=1)

    # unchanged library: nothing decoded, the same summary as the command printed
    second = str(dm().prepare(progress=False))
    assert "decoded 0 tracks this time (8 already cached)" in second
    assert summary_rows(second) == rows

    lib = dm().library()
    lengths = {source.name: track.duration for source, track in zip(lib.sources, lib.cached)}
    assert lengths == pytest.approx({spec[1]: spec[4] for spec in GOOD}, abs=0.1)  # AAC pads 2048 samples at most
    assert {(t.sample_rate, t.channels) for t in lib.cached} == {(RATE, 2)}

    # add, change and remove one track at a time
    added = make_good(root, ("hardcore", "Crew E - Nine.wav", 2, 44100, 0.5, None), 1000)
    summary = dm().prepare(progress=False)
    assert summary.decoded == 1 and summary.classes["hardcore"].tracks == 5
    write_audio(sources[1], noise(2, 2.0, 44100, 2000), 44100)  # same name, new content
    summary = dm().prepare(progress=False)
    assert summary.decoded == 1 and summary.hours * 3600 == pytest.approx(sum(s[4] for s in GOOD) + 0.5 + 1.0, abs=0.2)
    sources[0].unlink()
    summary = dm().prepare(progress=False)
    assert summary.decoded == 0 and summary.classes["metal"].tracks == 3
    lib = dm().library()
    assert sources[0] not in lib.sources and added in lib.sources and len(lib.sources) == 8
    assert "decoded 0 tracks this time (8 already cached)" in str(summary)


def test_artist_tags_win_over_file_names_when_grouping_by_artist(tmp_path):
    root = tmp_path / "music"
    for label in ("metal", "hardcore"):
        (root / label).mkdir(parents=True)
        for k in range(5):  # every file name says "Liar"; the tags name three bands per class
            write_audio(
                root / label / f"Liar - Song {k}.flac",
                noise(2, 0.3, RATE, 10 * len(label) + k),
                RATE,
                tags={"artist": f"{label} band {k % 3}"},
            )
        write_audio(root / label / f"Untagged {label} - Song.flac", noise(2, 0.3, RATE, len(label)), RATE)
    dm = MusicDataModule(
        str(root),
        str(tmp_path / "cache"),
        sample_rate=RATE,
        val_fraction=0.2,
        test_fraction=0.2,
        split=Split("artist"),
        workers_for_decoding=1,
        output_dir=str(tmp_path / "run"),
    )
    dm.prepare_data()
    dm.setup()
    with open(tmp_path / "run" / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["artist"] for r in rows} == {f"{c} band {k}" for c in ("metal", "hardcore") for k in range(3)} | {
        "Untagged metal",
        "Untagged hardcore",
    }
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["artist"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values()), splits_of


def test_class_left_too_small_by_skipped_files_is_one_clear_error(tmp_path):
    root = tmp_path / "music"
    for k in range(4):
        make_good(root, ("hardcore", f"Crew - {k}.wav", 2, RATE, 0.3, None), k)
    make_good(root, ("metal", "Band - ok.wav", 2, RATE, 0.3, None), 10)
    (root / "metal" / "Band - empty.wav").touch()
    (root / "metal" / "Band - text.mp3").write_text("no audio here")
    dm = MusicDataModule(str(root), str(tmp_path / "cache"), sample_rate=RATE, workers_for_decoding=1)
    assert len(dm.prepare(progress=False).skipped) == 2
    with pytest.raises(UserError) as info:
        dm.setup()
    message = str(info.value)
    assert "class 'metal' has 1 track; each class needs at least 3" in message and "\n" not in message
    assert (
        f"2 files could not be decoded and were left out (2 in 'metal'), see {dm.cache.folder / 'skipped.csv'}"
        in message
    )

    (root / "metal" / "Band - ok.wav").unlink()  # a class with nothing usable left
    dm = MusicDataModule(str(root), str(tmp_path / "cache"), sample_rate=RATE, workers_for_decoding=1)
    dm.prepare(progress=False)
    with pytest.raises(UserError, match="class 'metal' has no track that could be decoded; 2 files could not"):
        dm.setup()


def library_with_broken_files(root: Path) -> Path:
    """Four good tracks per class by two bands, and the broken files of ``BROKEN``."""
    for label in ("metal", "hardcore"):
        for k in range(4):
            make_good(root, (label, f"{label} band {k % 2} - song {k}.wav", 2, RATE, 1.5, None), 10 * len(label) + k)
    make_broken(root)
    return root


def test_broken_files_are_logged_and_left_out_of_the_split_and_the_loaders(tmp_path, caplog):
    """What a training run does before its first step (the slow test below runs it to the end)."""
    root = library_with_broken_files(tmp_path / "music")
    dm = MusicDataModule(
        str(root),
        str(tmp_path / "cache"),
        sample_rate=RATE,
        segment_seconds=1.0,
        segments_per_track=2,
        val_fraction=0.25,
        test_fraction=0.25,
        batch_size=4,
        num_workers=0,
        workers_for_decoding=1,
        output_dir=str(tmp_path / "run"),
    )
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    dm.setup("fit")
    for name, reason in BROKEN.items():
        assert f"skipped {root / name}: {reason}" in caplog.text, name
    assert sum(c["tracks"] for c in dm.counts().values()) == 8
    with open(tmp_path / "run" / "split.csv", newline="") as f:
        assert {Path(r["path"]).name for r in csv.DictReader(f)}.isdisjoint(Path(name).name for name in BROKEN)
    assert (tmp_path / "run" / "skipped.csv").is_file() and (dm.cache.folder / "skipped.csv").is_file()
    audio, _, _ = next(iter(dm.train_dataloader()))
    assert audio.shape == (4, 2, RATE) and torch.isfinite(audio).all()


@pytest.mark.slow
def test_training_runs_to_the_end_after_skipping_broken_files(tmp_path):
    root, run_dir = library_with_broken_files(tmp_path / "music"), tmp_path / "run"
    result = run_module(
        "metalcore.train",
        f"data.root={root}",
        "data.demo=null",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        f"data.sample_rate={RATE}",
        "data.segment_seconds=1.0",
        "data.segments_per_track=2",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.num_workers=0",
        "data.workers_for_decoding=1",
        "features.n_fft=512",
        "features.hop_length=256",
        "model.gru_hidden=16",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for name, reason in BROKEN.items():
        assert re.search(rf"skipped {re.escape(str(root / name))}: {re.escape(reason)}", output), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(c["tracks"] for c in metrics["counts"].values()) == 8
    with open(run_dir / "split.csv", newline="") as f:
        assert not any(
            Path(r["path"]).name in {"empty.wav", "notes.mp3", "cut.flac", "silent.wav"} for r in csv.DictReader(f)
        )
    assert os.path.exists(tmp_path / "cache" / f"{RATE}hz-2ch" / "skipped.csv")


def test_broken_files_are_remembered_and_not_decoded_again(tmp_path, monkeypatch):
    root = tmp_path / "music"
    make_broken(root)
    sources = sorted(p for p in root.rglob("*") if p.is_file())
    cache = AudioCache(tmp_path / "cache", RATE, 2)
    first = cache.build(sources, workers=1)
    assert len(first.skipped) == 4 and not first.tracks

    def no_decoding(path, *args, **kwargs):
        raise AssertionError(f"{path} was decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "audible", no_decoding)
        again = cache.build(sources, workers=2)  # nothing to decode: no worker process either
    assert again.skipped == first.skipped and again.decoded == 0
    # a repaired file is new content: decoded
    fixed = write_audio(root / "hardcore" / "cut.flac", noise(2, 1.0, 44100, 5), 44100)
    repaired = cache.build(sources, workers=1)
    assert repaired.decoded == 1 and list(repaired.tracks) == [fixed] and len(repaired.skipped) == 3
