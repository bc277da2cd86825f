"""The artist effect: synthetic artists with a production fingerprint, artist-balanced sampling, the gap table."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import train_config

from metalcore.audio.decode import decode
from metalcore.core.errors import UserError
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.demo import GENRES, DemoSet, artist_tracks, write_demo_set
from metalcore.data.segments import RandomCrops
from metalcore.data.split import Split
from metalcore.evaluation import artist_gap
from metalcore.evaluation.sweep import load
from metalcore.report import main as report_command

SR = 16000


def brightness(path: Path) -> float:
    """Share of the spectrum's energy above 2 kHz, in dB: what an EQ tilt moves."""
    audio = decode(path, SR, 2).astype(np.float64)
    power = np.abs(np.fft.rfft(audio, axis=-1)) ** 2  # (channels, bins)
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / SR)
    return float(10 * np.log10(power[:, freqs > 2000].sum() / power.sum()))


@pytest.fixture(scope="module")
def artist_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """4 bands per genre (2 prolific with the genre's sound, 2 at random), 12 tracks of 1.5 s each."""
    root = tmp_path_factory.mktemp("artists")
    return write_demo_set(root, 12, 1.5, seed=1, sample_rate=SR, artists=4, prolific=2, confound=1.0)


def by_artist(files: list[Path]) -> dict[tuple[str, str], list[Path]]:
    bands: dict[tuple[str, str], list[Path]] = collections.defaultdict(list)
    for path in files:
        bands[path.parent.name, path.stem.split(" - ")[0]].append(path)
    return bands


def test_tracks_per_artist_put_half_of_a_class_on_its_prolific_bands():
    assert artist_tracks(30, 10, 2) == [8, 7, 2, 2, 2, 2, 2, 2, 2, 1]
    assert artist_tracks(12, 4, 0) == [3, 3, 3, 3] and artist_tracks(12, 2, 2) == [6, 6]
    with pytest.raises(UserError, match=r"data.demo.artists=13"):
        artist_tracks(12, 13, 2)


def test_each_artist_keeps_its_sound_and_the_prolific_ones_sound_like_their_genre(artist_set: list[Path]):
    bands = by_artist(artist_set)
    assert sorted(len(v) for v in bands.values()) == [3, 3, 3, 3, 3, 3, 3, 3] and len(artist_set) == 24
    bright = {band: [brightness(p) for p in paths] for band, paths in bands.items()}
    within = np.mean([np.std(v) for v in bright.values()])
    between = np.std([np.mean(v) for v in bright.values()])
    assert between > 2 * within, (between, within)  # a band's tracks share its EQ, bands differ
    # the first two bands of each genre (the prolific ones, 3 tracks each here) have the genre's sound:
    # metal bright, hardcore dark; every prolific metal track is brighter than every prolific hardcore one
    order = {g: [b for b in bands if b[0] == g] for g in GENRES}
    prolific = {g: [x for b in order[g][:2] for x in bright[b]] for g in GENRES}
    assert min(prolific["metal"]) > max(prolific["hardcore"])


def test_the_plain_demo_is_unchanged_by_the_artist_options(tmp_path: Path):
    plain = write_demo_set(tmp_path / "a", 3, 0.5, 2, SR)
    again = write_demo_set(tmp_path / "b", 3, 0.5, 2, SR, prolific=1, confound=0.3)  # ignored without artists
    assert [p.read_bytes() for p in plain] == [p.read_bytes() for p in again]
    assert set(DemoSet().params()) == {"tracks_per_class", "seconds", "seed", "sample_rate"}  # old markers match
    assert DemoSet(artists=4).params()["artists"] == 4


@pytest.mark.parametrize("seed", range(5))
def test_a_split_by_artist_trains_on_the_prolific_bands_of_the_artists_config(seed: int):
    cfg = train_config("data=artists")
    demo, data = cfg.data.demo, cfg.data
    labels, artists = [], []
    for genre in GENRES:
        for band, count in enumerate(artist_tracks(demo.tracks_per_class, demo.artists, demo.prolific)):
            labels += [genre] * count
            artists += [f"{genre}{band}"] * count
    splits = Split("artist").assign(labels, artists, data.val_fraction, data.test_fraction, seed)
    prolific = {f"{g}{b}" for g in GENRES for b in range(demo.prolific)}
    assert {s for s, a in zip(splits, artists) if a in prolific} == {"train"}
    assert {s for s, a in zip(splits, artists) if a not in prolific} >= {"val", "test"}


def test_artist_sampling_gives_every_artist_the_same_crops_per_epoch():
    frames = np.full(10, 50_000)
    artists = np.array(["big"] * 6 + ["b", "b", "c", "d"])
    sampler = RandomCrops(frames, 1000, per_track=4, seed=0, groups=artists)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 40  # the epoch keeps its length
    per_artist = collections.Counter(artists[t] for t, _ in keys)
    assert sorted(per_artist.values()) == [10, 10, 10, 10]
    assert {t for t, _ in keys if artists[t] == "big"} == set(range(6))  # spread over the band's tracks
    assert all(0 <= start <= 49_000 for _, start in keys)
    assert keys == list(RandomCrops(frames, 1000, 4, 0, artists).__iter__())  # seeded
    assert keys != list(sampler)  # the next epoch draws anew
    uneven = collections.Counter(artists[t] for t, _ in RandomCrops(frames, 1000, 3, 0, artists))  # 30 over 4
    assert sorted(uneven.values()) == [7, 7, 8, 8]


def test_datamodule_samples_by_artist_when_asked(demo_root: Path, cache_dir: Path):
    with pytest.raises(UserError, match=r"data\.sampling='album'"):
        MusicDataModule(root=str(demo_root), cache_dir=str(cache_dir), sampling="album")
    dm = MusicDataModule(
        root=str(demo_root),
        cache_dir=str(cache_dir),
        sample_rate=16000,
        segment_seconds=1.0,
        segments_per_track=3,
        val_fraction=0.25,
        test_fraction=0.25,
        num_workers=0,
        workers_for_decoding=1,
        sampling="artist",
    )
    dm.prepare_data()
    dm.setup()
    sampler = dm.train_dataloader().sampler.sampler  # the RandomCrops inside the resumable wrapper (SkipFirst)
    artists = dm.train_artists()
    assert sampler.groups is not None and len(sampler.groups) == len(artists) == len(dm.datasets["train"])
    counts = collections.Counter(artists[t] for t, _ in sampler)
    assert max(counts.values()) - min(counts.values()) <= 1


def make_job(sweep: Path, name: str, overrides: dict[str, str], acc: float) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    scores = {"acc": acc, "f1": acc}
    (job / "metrics.json").write_text(json.dumps({"test": {"clip": scores, "track": scores}, "val": {}}))


@pytest.fixture
def effect_sweep(tmp_path: Path) -> Path:
    """group_by x augment x 3 seeds: without augmentation the gap is 0.4 +- a little, with it 0.1."""
    sweep = tmp_path / "sweep"
    track = {"none": [0.95, 1.0, 0.9], "strong": [0.9, 0.95, 0.85]}
    artist = {"none": [0.55, 0.55, 0.55], "strong": [0.8, 0.85, 0.75]}
    n = 0
    for augment in ("none", "strong"):
        for group_by, accs in (("track", track), ("artist", artist)):
            for seed, acc in enumerate(accs[augment]):
                overrides = {"data.split.group_by": group_by, "augment": augment, "seed": str(seed)}
                make_job(sweep, str(n), overrides, acc)
                n += 1
    return sweep


def test_gap_table_gives_each_configurations_gap_with_an_interval_over_seeds(effect_sweep: Path):
    rows = artist_gap.gaps(load(effect_sweep), "data.split.group_by", "track", "artist")
    assert [r.values for r in rows] == [{"augment": "none"}, {"augment": "strong"}]
    assert rows[0].gaps == pytest.approx({"0": 0.4, "1": 0.45, "2": 0.35})
    mean, half, n = artist_gap.t_interval(list(rows[0].gaps.values()))
    assert (mean, n) == (pytest.approx(0.4), 3)
    assert half == pytest.approx(4.303 * 0.05 / np.sqrt(3))  # Student's t with 2 degrees of freedom
    table = artist_gap.render_gaps(load(effect_sweep), "data.split.group_by", "track", "artist")
    assert "| none | 3 | 0.9500 | 0.5500 | +0.400 [+0.276, +0.524] | (reference) |" in table
    assert "| strong | 3 | 0.9000 | 0.8000 | +0.100 [+0.100, +0.100] | -0.300 [-0.424, -0.176] |" in table


def test_report_prints_the_gap_with_one_flag(effect_sweep: Path, capsys):
    assert report_command([str(effect_sweep), "--gap"]) == 0
    out = capsys.readouterr().out
    assert "## Gap: test.track.acc with data.split.group_by=track minus with data.split.group_by=artist" in out
    with pytest.raises(SystemExit) as stop:
        report_command([str(effect_sweep), "--gap", "data.split.group_by"])
    assert stop.value.code == 2 and "KEY=SEEN,UNSEEN" in capsys.readouterr().err


def test_artist_effect_sweeps_grouping_augmentation_and_sampling_over_seeds():
    cfg = train_config("experiment=artist_effect", hydra=True)
    assert dict(cfg.hydra.sweeper.params) == {
        "data.split.group_by": "track,artist",
        "augment": "none,strong",
        "data.sampling": "track,artist",
        "seed": "0,1,2",
    }
    assert cfg.data.demo.artists > 0 and cfg.augment.waveform == {}  # one job alone: the plain baseline
