"""The same recording in two class folders (a copy, a symlink, a linked folder) is a label conflict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError
from metalcore.core.files import read_csv
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.demo import render_track

RATE = 16000


def library(root: Path, per_class: int = 5) -> dict[str, list[Path]]:
    rng = np.random.default_rng(5)
    files: dict[str, list[Path]] = {}
    for genre in ("metal", "hardcore"):
        (root / genre).mkdir(parents=True)
        files[genre] = [
            write_audio(root / genre / f"{genre} band {i} - Song.flac", render_track(genre, rng, 1.0, RATE), RATE)
            for i in range(per_class)
        ]
    return files


def datamodule(root: Path, tmp_path: Path) -> MusicDataModule:
    return MusicDataModule(
        str(root),
        str(tmp_path / "cache"),
        sample_rate=RATE,
        segment_seconds=0.5,
        val_fraction=0.25,
        test_fraction=0.25,
        num_workers=0,
        workers_for_decoding=1,
        output_dir=str(tmp_path / "run"),
    )


def test_copies_across_classes_are_left_out_and_copies_within_one_count_once(tmp_path):
    root = tmp_path / "lib"
    files = library(root)
    copy = root / "hardcore" / "Copy - Of metal 0.flac"
    copy.write_bytes(files["metal"][0].read_bytes())
    link = root / "hardcore" / "Link - To metal 1.flac"
    link.symlink_to(files["metal"][1])
    twice = root / "metal" / "metal band 9 - The same song.flac"
    twice.write_bytes(files["metal"][2].read_bytes())

    dm = datamodule(root, tmp_path)
    summary = dm.prepare(progress=False)
    reasons = {path: reason for path, reason in summary.skipped}
    for path in (copy, files["metal"][0], link, files["metal"][1]):
        assert reasons[path].startswith("label conflict: the same recording as "), reasons
    assert str(files["metal"][0]) in reasons[copy] and "['hardcore', 'metal']" in reasons[copy]
    assert str(files["metal"][1]) in reasons[link]
    assert reasons[twice] == f"duplicate: the same recording as {files['metal'][2]}, counted once"
    assert {Path(row["path"]) for row in read_csv(tmp_path / "run" / "skipped.csv")} == set(reasons)
    assert (summary.classes["metal"].tracks, summary.classes["hardcore"].tracks) == (3, 5)
    assert "decoded 10 tracks this time (0 already cached)" in str(summary)  # a cold cache, copies or not
    assert "decoded 0 tracks this time (8 already cached)" in str(datamodule(root, tmp_path).prepare(progress=False))

    dm.setup()
    used = {Path(row["path"]) for row in read_csv(tmp_path / "run" / "split.csv")}
    assert used == set(files["metal"][2:] + files["hardcore"])


def test_a_class_folder_linked_into_another_is_reported_track_by_track(tmp_path):
    root = tmp_path / "lib"
    library(root)
    (root / "also metal").symlink_to(root / "metal", target_is_directory=True)
    summary = datamodule(root, tmp_path).prepare(progress=False)
    conflicts = [path for path, reason in summary.skipped if reason.startswith("label conflict")]
    assert len(conflicts) == 10 and summary.classes["metal"].tracks == 0


def test_a_class_left_empty_by_label_conflicts_says_so_not_that_nothing_decoded(tmp_path):
    root = tmp_path / "lib"
    files = library(root)
    (root / "punk").mkdir()
    for path in files["metal"][:3]:  # every punk track is a copy of a metal one
        (root / "punk" / path.name).write_bytes(path.read_bytes())
    dm = datamodule(root, tmp_path)
    dm.prepare(progress=False)
    with pytest.raises(
        UserError,
        match=r"^class 'punk' has no track left: its 3 tracks decoded but are the same "
        r"recordings as tracks of another class \(label conflicts\), see .*skipped.csv$",
    ):
        dm.setup()


@pytest.mark.parametrize("copies", [1, 3])
def test_one_label_each_keeps_catalogue_order(copies):
    from metalcore.data.catalogue import Track
    from metalcore.data.conflicts import one_label_each

    tracks = [Track(Path(f"/m/{i}"), "metal", "a") for i in range(copies)] + [Track(Path("/m/x"), "metal", "b")]
    kept, left_out = one_label_each(tracks, lambda t: "same" if t.artist == "a" else t.path)
    assert kept == [tracks[0], tracks[-1]] and len(left_out) == copies - 1


def test_skipped_files_are_logged_once_under_ddp(tmp_path, caplog, monkeypatch):
    """The parent, rank 0 and rank 1 each logged every skipped file (three times on the console)."""
    from lightning.pytorch.utilities import rank_zero_only

    root = tmp_path / "lib"
    library(root)
    (root / "metal" / "Broken - Song.flac").write_text("not audio")

    def skipped_lines(announce: bool, rank: int) -> int:
        caplog.clear()
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        dm = datamodule(root, tmp_path)
        dm.announce = announce
        dm.prepare_data()
        return sum("skipped " in r.getMessage() and "Broken - Song.flac" in r.getMessage() for r in caplog.records)

    assert skipped_lines(announce=True, rank=0) == 1  # the process that reports
    assert skipped_lines(announce=True, rank=1) == 0  # another rank (torchrun, srun)
    assert skipped_lines(announce=False, rank=0) == 0  # rank 0 started by metalcore, after its parent reported
