"""Nothing is dropped, padded or done without a word: folders that cannot be read, links, short
tracks, FIFOs, a run that would train nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_overrides, train_config

from metalcore.audio.cache import AudioCache
from metalcore.audio.decode import DecodeError, decode
from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError
from metalcore.data.catalogue import scan, walk
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.demo import render_track

RATE = 16000


def song(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(path, render_track("metal", np.random.default_rng(seed), seconds, RATE), RATE)


@pytest.fixture
def lib(tmp_path, monkeypatch) -> dict[str, Path]:
    """metal/ with a linked sub-folder, hardcore/ with one that cannot be listed (as for another user's folder)."""
    root = tmp_path / "lib"
    for i in range(3):
        song(root / "metal" / f"M{i} - Song.flac", seed=i)
        song(root / "hardcore" / f"H{i} - Song.flac", seed=10 + i)
    linked = song(tmp_path / "elsewhere" / "Linked - Song.flac", seed=20)
    (root / "metal" / "linked").symlink_to(linked.parent, target_is_directory=True)
    (root / "metal" / "loop").symlink_to(root / "metal", target_is_directory=True)
    locked = song(root / "hardcore" / "locked" / "Hidden - Song.flac", seed=30).parent
    scandir = os.scandir

    def permission_denied(path=".", *args):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", permission_denied)  # root reads every folder: inject the refusal
    return {"root": root, "linked": root / "metal" / "linked" / linked.name, "locked": locked}


def test_linked_folders_are_read_and_unreadable_ones_are_reported(lib):
    files, problems = walk(lib["root"] / "metal")
    assert lib["linked"] in files and len(files) == 4  # the link back up the tree is read once
    assert [reason for _, reason in problems] == ["folder not read again: a link to a folder already read"]
    files, problems = walk(lib["root"] / "hardcore")
    assert problems == [(lib["locked"], "folder not read: Permission denied")] and len(files) == 3


def test_a_link_up_the_tree_does_not_walk_into_the_other_class(lib):
    """``metal/up -> ..`` reaches hardcore/ through the data root: each hardcore track became a label conflict."""
    root = lib["root"]
    (root / "metal" / "up").symlink_to("..", target_is_directory=True)
    files, problems = walk(root / "metal")
    assert len(files) == 4 and not [f for f in files if "hardcore" in f.parts]
    assert (root / "metal" / "up", f"folder not read: a link up the tree to {root}, which holds this class folder") in (
        problems
    )
    labels = [t.label for t in scan(root)]
    assert labels.count("metal") == 4 and labels.count("hardcore") == 3  # the locked folder's track is listed


def test_prepare_lists_unreadable_folders_and_says_how_many_tracks_are_padded(lib, tmp_path):
    dm = MusicDataModule(
        str(lib["root"]), str(tmp_path / "cache"), sample_rate=RATE, segment_seconds=2.0, workers_for_decoding=1
    )
    summary = dm.prepare(progress=False)
    assert (lib["locked"], "folder not read: Permission denied") in summary.skipped
    assert summary.classes["metal"].tracks == 4
    padded = "7 of 7 tracks are shorter than a segment (2 s) and are padded with silence; lower data.segment_seconds=2"
    assert padded in str(summary) and padded in summary.headline()


def test_a_fifo_is_refused_instead_of_read_forever(tmp_path):
    fifo = tmp_path / "Band - Stream.mp3"
    os.mkfifo(fifo)

    def waited(signum, frame):
        pytest.fail("waited on the FIFO")  # not an OSError, which the cache would take for an unreadable file

    previous = signal.signal(signal.SIGALRM, waited)
    signal.alarm(20)  # a regression would block on open(): fail instead of hanging the suite
    try:
        with pytest.raises(DecodeError, match="cannot read file: a FIFO, not an audio file"):
            decode(fifo, RATE, 2)
        result = AudioCache(tmp_path / "cache", RATE, 2).build([fifo], workers=1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.skipped == [(fifo, "cannot read file: a FIFO, not an audio file")]


def test_max_epochs_0_is_refused_before_anything_is_built(tmp_path):
    from metalcore.training.experiment import run

    cfg = train_config(
        *tiny_overrides(tmp_path / "cache"), f"paths.output_dir={tmp_path / 'run'}", "trainer.max_epochs=0"
    )
    with pytest.raises(UserError, match=r"^trainer.max_epochs=0 trains nothing"):
        run(cfg)
    assert not (tmp_path / "cache").exists()  # refused before the demo set was written or anything decoded
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
