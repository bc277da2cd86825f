"""k-fold cross-validation and the album filter: every track tested once, no group across test folds."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_module, tiny_overrides

from metalcore.core.errors import UserError
from metalcore.data.catalogue import scan
from metalcore.data.split import Split


def library(n_per_class: int = 20, seed: int = 0):
    """Labels, artists (3 tracks each) and albums (several per artist, some tracks without one)."""
    rng = np.random.default_rng(seed)
    labels = ["metal"] * n_per_class + ["hardcore"] * n_per_class
    artists = [f"{label}-band{i // 3}" for i, label in enumerate(labels)]
    albums = [f"{a}/lp{rng.integers(2)}" if rng.random() < 0.8 else "" for a in artists]
    return labels, artists, albums


@pytest.mark.parametrize("group_by", ["track", "artist", "album"])
def test_folds_partition_the_tracks_and_no_group_is_in_two_test_folds(group_by):
    labels, artists, albums = library()
    keyed = {"track": list(range(len(labels))), "artist": artists, "album": albums}[group_by]
    test_fold_of: dict[int, int] = {}
    for fold in range(5):
        splits = Split(group_by, folds=5, fold=fold).assign(labels, artists, 0.1, 0.2, seed=7, albums=albums)
        assert set(splits) == {"train", "val", "test"}
        tested = np.flatnonzero(splits == "test")
        assert {labels[i] for i in tested} == {"metal", "hardcore"}  # stratified: every fold has every class
        for i in tested:
            assert i not in test_fold_of  # each track in one test fold only
            test_fold_of[i] = fold
        for group in {keyed[i] for i in tested if keyed[i] != ""}:  # a group's tracks all sit in this test fold
            assert all(splits[j] == "test" for j in range(len(labels)) if keyed[j] == group)
        for split in ("train", "val"):  # and no group straddles the other splits either
            groups = {keyed[i] for i in np.flatnonzero(splits == split) if keyed[i] != ""}
            assert groups.isdisjoint({keyed[i] for i in tested if keyed[i] != ""})
    assert sorted(test_fold_of) == list(range(len(labels)))  # the folds cover every track
    sizes = Counter(test_fold_of.values())
    biggest = max(Counter(k for k in keyed if k != "").values())
    assert max(sizes.values()) - min(sizes.values()) <= 2 * biggest  # balanced to within a group per class


def test_album_grouping_keeps_each_album_in_one_split_and_tracks_without_album_alone():
    labels, artists, albums = library(30)
    splits = Split("album").assign(labels, artists, 0.2, 0.2, seed=1, albums=albums)
    for album in {a for a in albums if a}:
        assert len({splits[i] for i, a in enumerate(albums) if a == album}) == 1
    loose = [i for i, a in enumerate(albums) if not a]
    assert loose and Split("album").groups(artists, None, albums)[loose[0]] == ("track", loose[0])


def test_fold_settings_are_checked():
    with pytest.raises(UserError, match=r"data.split.folds=5 data.split.fold=5"):
        Split(folds=5, fold=5)
    with pytest.raises(UserError, match=r"data.split.folds=1"):
        Split(folds=1)
    labels, artists, _ = library(3)
    with pytest.raises(UserError, match=r"data.split.folds=5 \(fold 4\) leaves the test split without"):
        Split(folds=5, fold=4).assign(labels, artists, 0.1, 0.2, seed=0)


def test_album_comes_from_the_sub_folder_when_the_tag_is_missing(tmp_path: Path):
    for relative in ("metal/Band/First LP/a.wav", "metal/b.wav", "hardcore/Crew/Demo/c.wav"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    albums = {t.path.name: t.album for t in scan(tmp_path)}
    assert albums == {"a.wav": "Band/First LP", "b.wav": "", "c.wav": "Crew/Demo"}


@pytest.mark.slow  # tests/test_report_pooled.py covers the report on hand-made folds in a second
def test_two_fold_cross_validation_and_report_end_to_end(tmp_path: Path, cache_dir: Path, demo_root: Path):
    """The README's commands on the tiny set: a sweep over the folds, then the report pools them."""
    sweep = tmp_path / "cv"
    result = run_module(
        "metalcore.train",
        "-m",
        *tiny_overrides(cache_dir, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"),
        "data.split.folds=2",
        "data.split.fold=0,1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tested = []
    for job in ("0", "1"):
        with open(sweep / job / "split.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {"artist", "album"} <= set(rows[0])
        tested += [r["path"] for r in rows if r["split"] == "test"]
    assert len(tested) == len(set(tested)) == 16  # every track tested exactly once
    report = run_module("metalcore.report", str(sweep))
    assert report.returncode == 0, report.stderr
    assert "## Cross-validation: every fold's held-out tracks pooled" in report.stdout
    assert "| (every job) | 2 | 16 | acc " in report.stdout
    with open(sweep / "oof_tracks.csv", newline="") as f:
        oof = list(csv.DictReader(f))
    assert sorted(r["path"] for r in oof) == sorted(tested)
    assert {r["data.split.fold"] for r in oof} == {"0", "1"}
    assert (sweep / "suspected_labels.csv").is_file()
