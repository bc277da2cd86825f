"""data/: the catalogue, the track-level split, segment windows and the DataModule over the shared cache.

Catalogue and split tests need no audio (the catalogue never decodes; the split works on label and
artist lists); the DataModule tests read the tiny synthetic set through the session's audio cache.
"""

from __future__ import annotations

import csv
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import metalcore.audio.cache as cache_module
from metalcore.audio.cache import AudioCache
from metalcore.audio.pcm import to_float
from metalcore.core.errors import UserError
from metalcore.data.catalogue import artist_from_name, scan
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.segments import RandomCrops, SegmentDataset, grid
from metalcore.data.split import SPLITS, Split, check_fractions

SR = 16000  # the rate tiny_overrides trains at, so these tests and the trained run share one cache entry


def touch(path: Path) -> Path:
    """A file the catalogue sees as a track: it only looks at names, never at the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by the catalogue")
    return path


# -- catalogue ------------------------------------------------------------------------------------


def test_catalogue_reads_class_from_folder_and_artist_from_name(tmp_path):
    tracks = [
        touch(tmp_path / "metal" / "Frozen Throne - Ninth Gate.mp3"),
        touch(tmp_path / "metal" / "live" / "1999" / "Frozen Throne - Pale Tower (live).FLAC"),
        touch(tmp_path / "hardcore" / "Dead Ground - Hold Your Ground.wav"),
        touch(tmp_path / "hardcore" / "untitled demo.ogg"),
    ]
    for junk in (
        "metal/.DS_Store",
        "metal/._Frozen Throne - Ninth Gate.mp3",
        "metal/cover.jpg",
        "metal/.hidden/Frozen Throne - Secret.mp3",
        "hardcore/notes.txt",
        ".trash/metal/x.mp3",
        "loose file at the root.mp3",
    ):
        touch(tmp_path / junk)

    found = scan(tmp_path)

    assert sorted(t.path for t in found) == sorted(p.resolve() for p in tracks)
    by_name = {t.path.name: t for t in found}
    assert by_name["Frozen Throne - Pale Tower (live).FLAC"].label == "metal"  # subfolders keep the class
    assert by_name["Dead Ground - Hold Your Ground.wav"].label == "hardcore"
    assert by_name["Frozen Throne - Ninth Gate.mp3"].artist == "Frozen Throne"
    assert by_name["untitled demo.ogg"].artist == "untitled demo"  # no " - ": its own artist
    assert [t.path for t in found] == sorted(t.path for t in found), "catalogue order must be reproducible"


@pytest.mark.parametrize(
    "name, artist",
    [
        ("A - B.mp3", "A"),
        ("A - B - C.mp3", "A"),
        (" - Title.mp3", " - Title"),
        ("Band-Title.mp3", "Band-Title"),
        ("Some Band  - Song.wav", "Some Band"),
    ],
)
def test_artist_from_name(name, artist):
    assert artist_from_name(Path(name)) == artist


@pytest.mark.parametrize("classes", [("metal", "hardcore"), ("metal", "hardcore", "punk"), tuple("abcde")])
def test_catalogue_takes_any_number_of_classes(tmp_path, classes):
    for label in classes:
        touch(tmp_path / label / f"{label} band - song.opus")
    assert sorted({t.label for t in scan(tmp_path)}) == sorted(classes)


def _missing(root: Path) -> Path:
    return root / "no such folder"


def _empty(root: Path) -> Path:
    (root / "metal").mkdir()
    touch(root / "metal" / ".DS_Store")
    touch(root / "metal" / "._song.mp3")
    return root


def _one_class(root: Path) -> Path:
    touch(root / "metal" / "A - B.mp3")
    touch(root / "metal" / "C - D.flac")
    (root / "hardcore").mkdir()
    return root


@pytest.mark.parametrize(
    "make_root, reason", [(_missing, "does not exist"), (_empty, "no audio files"), (_one_class, "only one class")]
)
def test_catalogue_errors_say_where_tracks_go_and_how_to_run_the_demo(tmp_path, make_root, reason):
    root = make_root(tmp_path)
    with pytest.raises(UserError) as err:
        scan(root)
    message = str(err.value)
    assert f"data.root={root}" in message and reason in message
    assert "data_music/metal/" in message and "python -m metalcore.train data=synthetic" in message
    assert "\n" not in message


# -- split ----------------------------------------------------------------------------------------

LABELS = ["metal"] * 40 + ["hardcore"] * 30 + ["punk"] * 20
ARTISTS = [f"{label}-band{i % 10}" for i, label in enumerate(LABELS)]  # 10 bands per class, uneven sizes


@pytest.mark.parametrize("val, test", [(0.1, 0.2), (0.25, 0.25), (0.15, 0.05)])
def test_split_is_stratified_by_class(val, test):
    result = Split().assign(LABELS, ARTISTS, val, test, seed=0)
    assert len(result) == len(LABELS) and set(result) == set(SPLITS)
    fractions = {"train": 1 - val - test, "val": val, "test": test}
    counts = Counter(zip(LABELS, result))
    for label, total in Counter(LABELS).items():
        for split, fraction in fractions.items():
            assert abs(counts[label, split] - total * fraction) <= 1, (label, split, counts)


@pytest.mark.parametrize("group_by", ["track", "artist"])
def test_split_is_reproducible_for_a_seed_and_changes_with_it(group_by):
    split = Split(group_by)
    first = split.assign(LABELS, ARTISTS, 0.1, 0.2, seed=7)
    assert np.array_equal(first, split.assign(LABELS, ARTISTS, 0.1, 0.2, seed=7))
    assert not np.array_equal(first, split.assign(LABELS, ARTISTS, 0.1, 0.2, seed=8))


def test_split_by_artist_keeps_every_artist_in_one_split():
    result = Split("artist").assign(LABELS, ARTISTS, 0.1, 0.2, seed=3)
    splits_of = {}
    for artist, split in zip(ARTISTS, result):
        splits_of.setdefault(artist, set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    assert {(label, split) for label, split in zip(LABELS, result)} == {(c, s) for c in set(LABELS) for s in SPLITS}
    # grouping by track would have split bands up: the test above can fail
    by_track = Split("track").assign(LABELS, ARTISTS, 0.1, 0.2, seed=3)
    assert any(len({s for a, s in zip(ARTISTS, by_track) if a == artist}) > 1 for artist in set(ARTISTS))


def test_split_that_leaves_a_class_out_names_the_key():
    labels, artists = ["a"] * 10 + ["b"] * 6, [f"x{i}" for i in range(10)] + ["y1", "y2"] * 3
    with pytest.raises(UserError, match="without any 'b' track") as err:
        Split("artist").assign(labels, artists, 0.1, 0.2, seed=0)
    assert "data.val_fraction=0.1" in str(err.value) and "grouped by artist" in str(err.value)


def test_a_class_smaller_than_the_number_of_splits_says_so_whatever_the_fractions():
    """It said "data.val_fraction=0.1 leaves the val split without any 'b' track": no fraction could help."""
    with pytest.raises(UserError, match=r"^class 'b' has 2 tracks; each class needs at least 3, one for each"):
        Split("track").assign(["a"] * 10 + ["b"] * 2, [f"x{i}" for i in range(12)], 0.1, 0.2, seed=0)


@pytest.mark.parametrize(
    "val, test, key",
    [
        (0.0, 0.2, "data.val_fraction=0.0"),
        (0.1, 0.0, "data.test_fraction=0.0"),
        (-0.1, 0.2, "data.val_fraction=-0.1"),
        (0.1, 1.0, "data.test_fraction=1.0"),
        (0.5, 0.5, "nothing to train on"),
        (0.6, 0.7, "nothing to train on"),
    ],
)
def test_invalid_fractions_are_refused(val, test, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        check_fractions(val, test)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        Split().assign(LABELS, ARTISTS, val, test, seed=0)


def test_unknown_grouping_is_refused():
    with pytest.raises(UserError, match=r"data\.split\.group_by='label'"):
        Split("label")


# -- segments -------------------------------------------------------------------------------------

FRAMES = np.array([100_000, 16_000, 5_000, 48_013])
LENGTH = 16_000


@pytest.mark.parametrize("per_track", [1, 2, 7])
def test_grid_spreads_windows_over_each_track(per_track):
    windows = grid(FRAMES, LENGTH, per_track)
    assert windows.shape == (len(FRAMES) * per_track, 2) and windows.dtype == np.int64
    assert np.array_equal(windows[:, 0], np.repeat(np.arange(len(FRAMES)), per_track))
    for track, frames in enumerate(FRAMES):
        starts = windows[windows[:, 0] == track, 1]
        room = max(frames - LENGTH, 0)
        assert starts.min() == 0 and (starts <= room).all()  # inside the track, or at 0 when it is short
        if per_track > 1:
            assert starts.max() == room  # the last window ends where the track ends
            assert np.ptp(np.diff(starts)) <= 1  # evenly spaced


def test_random_crops_are_in_bounds_and_deterministic_per_seed_and_epoch():
    def crops(seed: int, epoch: int) -> list[tuple[int, int]]:
        sampler = RandomCrops(FRAMES, LENGTH, per_track=5, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = crops(seed=0, epoch=3)
    assert len(first) == len(RandomCrops(FRAMES, LENGTH, 5, 0)) == len(FRAMES) * 5
    assert Counter(t for t, _ in first) == {t: 5 for t in range(len(FRAMES))}
    assert all(0 <= start <= max(FRAMES[t] - LENGTH, 0) for t, start in first)
    assert first == crops(seed=0, epoch=3)
    assert first != crops(seed=0, epoch=4) and first != crops(seed=1, epoch=3)
    assert [s for t, s in first if FRAMES[t] <= LENGTH] == [0] * 10
    # a plain loop that never calls set_epoch still draws new crops on each pass
    sampler = RandomCrops(FRAMES, LENGTH, per_track=5, seed=0)
    assert list(sampler) != list(sampler)


@pytest.mark.parametrize("channels", [1, 2])
def test_segment_dataset_reads_cached_int16_and_pads_short_windows(tmp_path, channels):
    rng = np.random.default_rng(0)
    frames = np.array([3000, 500])
    samples = [rng.integers(-32768, 32767, (n, channels), dtype=np.int16) for n in frames]
    paths = []
    for i, pcm in enumerate(samples):
        paths.append(tmp_path / f"{i}.pcm")
        pcm.tofile(paths[-1])
    ds = SegmentDataset(np.array([str(p) for p in paths]), frames, np.array([1, 0]), channels, length=1000)

    audio, label, track = ds[(0, 1234)]
    assert audio.dtype == torch.int16 and audio.shape == (channels, 1000) and (label, track) == (1, 0)
    assert torch.equal(audio, torch.from_numpy(samples[0][1234:2234].T))
    assert torch.equal(to_float(audio), torch.from_numpy(samples[0][1234:2234].T / np.float32(32768)))
    tail, _, _ = ds[(0, 2500)]  # runs past the end: the rest is silence
    assert torch.equal(tail[:, :500], torch.from_numpy(samples[0][2500:].T))
    assert not tail[:, 500:].any()
    short, label, track = ds[(1, 0)]  # a track shorter than a segment
    assert short.shape == (channels, 1000) and (label, track) == (0, 1) and not short[:, 500:].any()
    again = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert torch.equal(again[(0, 1234)][0], audio)


# -- DataModule over the shared cache -------------------------------------------------------------

PER_TRACK = 3


def datamodule(demo_root: Path, cache_dir: Path, output_dir: Path | None = None, **kw) -> MusicDataModule:
    params = dict(
        root=str(demo_root),
        cache_dir=str(cache_dir),
        sample_rate=SR,
        channels=2,
        segment_seconds=1.5,
        segments_per_track=PER_TRACK,
        val_fraction=0.25,
        test_fraction=0.25,
        batch_size=5,
        num_workers=0,
        seed=0,
        output_dir=str(output_dir) if output_dir else None,
        workers_for_decoding=1,
    )
    return MusicDataModule(**{**params, **kw})


@pytest.fixture(scope="module")
def prepared(demo_root, cache_dir, tmp_path_factory) -> MusicDataModule:
    dm = datamodule(demo_root, cache_dir, tmp_path_factory.mktemp("datamodule"))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def read_split(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_datamodule_counts_tracks_and_clips_per_split(prepared, demo_root):
    audio = sorted(p for p in demo_root.rglob("*") if p.suffix in (".wav", ".flac"))
    counts = prepared.counts()
    assert prepared.classes == ["hardcore", "metal"]
    assert set(counts) == set(SPLITS)
    assert sum(c["tracks"] for c in counts.values()) == len(audio) == 16
    assert counts == {
        "train": {"tracks": 8, "clips": 8 * PER_TRACK},
        "val": {"tracks": 4, "clips": 4 * PER_TRACK},
        "test": {"tracks": 4, "clips": 4 * PER_TRACK},
    }
    for split in SPLITS:
        assert Counter(label for _, label in prepared.tracks(split)) == {
            "hardcore": counts[split]["tracks"] // 2,
            "metal": counts[split]["tracks"] // 2,
        }


def test_datamodule_writes_split_csv_with_each_track_once(prepared, demo_root):
    rows = read_split(prepared.output_dir / "split.csv")
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 16
    assert {Path(p) for p in paths} == {p.resolve() for p in demo_root.rglob("*") if p.suffix in (".wav", ".flac")}
    for row in rows:
        assert row["split"] in SPLITS and row["class"] == Path(row["path"]).parent.name
        assert row["artist"] == Path(row["path"]).name.split(" - ")[0]
        assert float(row["duration_s"]) == pytest.approx(8.0, abs=0.01)
    assert {(r["split"], r["class"]) for r in rows} == {(s, c) for s in SPLITS for c in prepared.classes}


def test_dataloaders_serve_int16_segments_with_their_labels(prepared):
    samples = round(1.5 * SR)
    for split, loader in (
        ("train", prepared.train_dataloader()),
        ("val", prepared.val_dataloader()),
        ("test", prepared.test_dataloader()),
    ):
        seen = Counter()
        for audio, labels, tracks in loader:
            assert audio.dtype == torch.int16 and audio.shape == (len(labels), 2, samples) and len(labels) <= 5
            assert to_float(audio).abs().amax(-1).min() > 0, "segments hold audio, not silence"
            names = prepared.tracks(split)
            assert [prepared.classes[int(y)] for y in labels] == [names[int(t)][1] for t in tracks]
            seen.update(tracks.tolist())
        assert seen == {t: PER_TRACK for t in range(len(prepared.datasets[split]))}, split


def test_batches_cross_as_int16_and_become_float_on_the_device(prepared):
    """Half the bytes of float32 travel; after the transfer (Lightning's hook) the model gets float samples."""
    batch = next(iter(prepared.train_dataloader()))
    audio, labels, tracks = prepared.on_after_batch_transfer(batch, 0)
    assert batch[0].dtype == torch.int16 and audio.dtype == torch.float32
    assert torch.equal(audio, batch[0].float() / 32768) and audio.abs().max() <= 1
    assert torch.equal(labels, batch[1]) and torch.equal(tracks, batch[2])


def test_segments_equal_the_cached_samples(prepared):
    ds = prepared.datasets["test"]
    source, _ = prepared.tracks("test")[1]
    cached = prepared.cache.lookup(source)
    start = 12_345
    audio, _, track = ds[(1, start)]
    expected = np.asarray(cached.open()[start : start + ds.length]).T
    assert track == 1 and torch.equal(audio, torch.from_numpy(expected))


def test_second_datamodule_reuses_the_cache_and_the_split(prepared, demo_root, cache_dir, tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached track was decoded again")

    monkeypatch.setattr(cache_module, "audible", no_decoding)
    again = datamodule(demo_root, cache_dir, tmp_path / "same", segment_seconds=0.5)  # segment length: no re-decode
    again.prepare_data()
    again.setup("fit")
    assert AudioCache(cache_dir, SR, 2).build(sorted(demo_root.rglob("*.wav")), workers=1).decoded == 0
    assert read_split(tmp_path / "same" / "split.csv") == read_split(prepared.output_dir / "split.csv")

    other = datamodule(demo_root, cache_dir, tmp_path / "other", seed=1)
    other.prepare_data()
    other.setup("fit")
    assert read_split(tmp_path / "other" / "split.csv") != read_split(prepared.output_dir / "split.csv")


def test_datamodule_grouped_by_artist_reports_a_split_it_cannot_fill(prepared, demo_root, cache_dir):
    # the tiny set has two bands per class: grouped by artist, one of the three splits must go without
    dm = datamodule(demo_root, cache_dir, split=Split("artist"))
    dm.prepare_data()
    with pytest.raises(UserError, match=r"data\.(val|test)_fraction=0\.25 leaves the (val|test) split without any"):
        dm.setup("fit")


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"channels": 6}, "data.channels=6"),
        ({"sample_rate": 100}, "data.sample_rate=100"),
        ({"segment_seconds": 0}, "data.segment_seconds=0"),
        ({"segments_per_track": 0}, "data.segments_per_track=0"),
        ({"test_fraction": 0.8}, "data.test_fraction=0.8"),
    ],
)
def test_datamodule_refuses_impossible_settings_when_built(tmp_path, kw, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        datamodule(tmp_path, tmp_path, **kw)


def test_copies_of_one_song_stay_in_one_split():
    """Two files with the same audio (an album track and its compilation copy) are one group."""
    labels = ["metal"] * 12 + ["hardcore"] * 12
    contents = [f"song{i}" for i in range(24)]
    contents[1] = contents[0]  # the copy
    contents[13] = contents[12]
    for seed in range(10):
        result = Split("track").assign(labels, [f"a{i}" for i in range(24)], 0.25, 0.25, seed, contents=contents)
        assert result[0] == result[1] and result[12] == result[13]


def test_artist_names_differing_in_case_or_spacing_are_one_artist():
    labels = ["metal"] * 12 + ["hardcore"] * 12
    artists = [f"Band{i // 2}" if i % 2 else f" band{i // 2}  " for i in range(24)]  # pairs spelled two ways
    for seed in range(10):
        result = Split("artist").assign(labels, artists, 0.25, 0.25, seed)
        assert all(result[i] == result[i + 1] for i in range(0, 24, 2))


# -- audio held on the training device (data.on_device) --------------------------------------------


def test_on_device_loaders_cut_the_same_crops_and_samples_as_the_memory_mapped_loader(demo_root, cache_dir):
    """The same seed gives the same batches, sample for sample, from either path, over two epochs;
    a segment longer than the shortest track is zero-padded the same way."""
    for seconds in (1.5, 9.0):  # 9 s runs past the end of the 8 s tracks
        mapped = datamodule(demo_root, cache_dir, segment_seconds=seconds, on_device=False)
        held = datamodule(demo_root, cache_dir, segment_seconds=seconds, on_device=True)
        for dm in (mapped, held):
            dm.prepare_data()
            dm.setup("fit")
        for epoch in (0, 1):
            for make in ("train_dataloader", "val_dataloader", "test_dataloader"):
                loaders = [getattr(dm, make)() for dm in (mapped, held)]
                for loader in loaders:
                    if hasattr(loader.sampler, "set_epoch"):
                        loader.sampler.set_epoch(epoch)  # as Lightning does every epoch
                pairs = list(zip(*loaders, strict=True))
                assert len(pairs) == len(loaders[0]) == len(loaders[1]) > 1, make
                for (a, la, ta), (b, lb, tb) in pairs:
                    assert b.dtype == torch.int16 and torch.equal(a, b), (make, epoch)
                    assert torch.equal(la, lb) and torch.equal(ta, tb)
        assert set(held.held) == set(SPLITS) and not mapped.held


def test_on_device_auto_keeps_the_memory_mapped_loader_on_cpu(prepared):
    assert prepared.on_device == "auto" and not prepared.holds_on_device()
    assert prepared.train_dataloader().num_workers == prepared.num_workers


def test_on_device_refuses_an_unknown_value(demo_root, cache_dir):
    with pytest.raises(UserError, match=r"data\.on_device='gpu' must be auto, true or false"):
        datamodule(demo_root, cache_dir, on_device="gpu")
