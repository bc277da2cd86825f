"""The synthetic demo set: layout, determinism, safe one-time creation, genre character and the CLI."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import av
import numpy as np
import pytest

from metalcore.data import demo as demo_module
from metalcore.data.demo import GENRES, DemoSet, render_track, write_demo_set
from metalcore.synth import main

SR = 44100


def _probe(path: Path) -> tuple[int, int, float, str]:
    """(channels, sample rate, seconds, artist tag) of an audio file, read back through PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.channels, stream.rate, samples / stream.rate, container.metadata.get("artist", "")


def _onsets_per_second(audio: np.ndarray, sample_rate: int, hop: int = 512, rise_db: float = 3.0) -> float:
    """Peaks of the rise in frame energy (dB) above ``rise_db``: a plain energy-envelope onset count."""
    mono = audio.mean(axis=0)
    frames = mono[: len(mono) // hop * hop].reshape(-1, hop)
    rise = np.diff(10 * np.log10(np.mean(frames**2, axis=1) + 1e-10))
    peaks = (rise[1:-1] > rise[:-2]) & (rise[1:-1] >= rise[2:]) & (rise[1:-1] > rise_db)
    return peaks.sum() / (len(mono) / sample_rate)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("demo")
    return root, write_demo_set(root, tracks_per_class=4, seconds=2.0, seed=3, sample_rate=SR)


def test_files_land_in_genre_folders_with_artist_title_names(demo_files: tuple[Path, list[Path]]) -> None:
    root, files = demo_files
    assert len(files) == 8
    assert sorted(files) == sorted(p for p in root.rglob("*") if p.is_file())
    for genre in GENRES:
        names = [p for p in files if p.parent == root / genre]
        assert len(names) == 4
        assert {p.suffix for p in names} == {".wav", ".flac"}
        artists = {p.stem.split(" - ")[0] for p in names}
        assert all(" - " in p.stem for p in names) and len(artists) >= 2
        assert len({p.stem.split(" - ", 1)[1] for p in names}) == 4  # titles are unique
    metal_artists, hardcore_artists = ({p.stem.split(" - ")[0] for p in files if p.parent.name == g} for g in GENRES)
    assert not metal_artists & hardcore_artists


def test_files_are_stereo_at_the_requested_rate_and_tagged(demo_files: tuple[Path, list[Path]]) -> None:
    _, files = demo_files
    for path in files:
        channels, rate, seconds, artist = _probe(path)
        assert (channels, rate) == (2, SR)
        assert seconds == pytest.approx(2.0, abs=0.01)
        assert artist == path.stem.split(" - ")[0]


@pytest.mark.parametrize("genre", GENRES)
def test_render_track_shape_range_and_determinism(genre: str) -> None:
    audio = render_track(genre, np.random.default_rng(7), 2.5, SR)
    assert audio.shape == (2, round(2.5 * SR)) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and 0.01 < np.abs(audio).max() <= 0.99
    assert not np.array_equal(audio[0], audio[1])  # stereo, not dual mono
    assert audio.tobytes() == render_track(genre, np.random.default_rng(7), 2.5, SR).tobytes()
    assert not np.array_equal(audio, render_track(genre, np.random.default_rng(8), 2.5, SR))
    with pytest.raises(ValueError, match="genre"):
        render_track("polka", np.random.default_rng(7), 1.0, SR)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    def names(root: Path, seed: int) -> list[str]:
        return [str(p.relative_to(root)) for p in write_demo_set(root, 3, 0.5, seed, SR)]

    assert names(tmp_path / "a", 1) == names(tmp_path / "b", 1)
    assert names(tmp_path / "a", 1) != names(tmp_path / "c", 2)
    for path in (tmp_path / "a").rglob("*.wav"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_genres_differ_in_rhythm_not_in_loudness() -> None:
    tracks = {g: [render_track(g, np.random.default_rng(i), 4.0, SR) for i in range(6)] for g in GENRES}
    onsets = {g: np.mean([_onsets_per_second(a, SR) for a in tracks[g]]) for g in GENRES}
    assert onsets["metal"] > 1.3 * onsets["hardcore"], onsets
    loudness = {g: np.mean([_rms(a) for a in tracks[g]]) for g in GENRES}
    assert 0.5 < loudness["metal"] / loudness["hardcore"] < 2.0, loudness
    # levels are drawn per track, so the two classes' RMS ranges overlap
    metal_rms, hardcore_rms = ([_rms(a) for a in tracks[g]] for g in GENRES)
    assert min(metal_rms) < max(hardcore_rms) and min(hardcore_rms) < max(metal_rms)


def test_ensure_creates_once_and_rejects_other_parameters(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    demo = DemoSet(tracks_per_class=3, seconds=0.5, seed=0)
    assert demo.ensure(root) == root
    files = sorted(root.rglob("*.*"))
    assert len([p for p in files if p.suffix in (".wav", ".flac")]) == 6 and (root / ".complete").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert demo.ensure(root) == root
    assert {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*.*"))} == stamps
    with pytest.raises(ValueError, match="seed") as error:
        DemoSet(tracks_per_class=3, seconds=0.5, seed=1).ensure(root)
    assert str(root) in str(error.value)
    assert list(tmp_path.iterdir()) == [root]  # no staging folders left behind


def test_ensure_refuses_a_folder_that_is_not_a_demo_set(tmp_path: Path) -> None:
    (tmp_path / "music" / "metal").mkdir(parents=True)
    (tmp_path / "music" / "metal" / "song.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="not a complete demo set"):
        DemoSet(tracks_per_class=3, seconds=0.5).ensure(tmp_path / "music")


def test_concurrent_ensure_leaves_one_complete_set(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    demo = DemoSet(tracks_per_class=3, seconds=1.0, seed=4)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=demo.ensure, args=(root,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert len(list(root.rglob("*.wav"))) + len(list(root.rglob("*.flac"))) == 6
    assert (root / ".complete").is_file()
    assert list(tmp_path.iterdir()) == [root]
    assert demo.ensure(root) == root


def test_ensure_yields_to_a_writer_that_finished_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "synthetic"
    demo = DemoSet(tracks_per_class=3, seconds=0.5)

    def racing(staging: Path, **params: object) -> list[Path]:  # another process completes root meanwhile
        monkeypatch.setattr(demo_module, "write_demo_set", write_demo_set)
        demo.ensure(root)
        return write_demo_set(staging, **params)

    monkeypatch.setattr(demo_module, "write_demo_set", racing)
    assert demo.ensure(root) == root
    stamp = (root / ".complete").stat().st_mtime_ns
    assert list(tmp_path.iterdir()) == [root] and demo.ensure(root) == root
    assert (root / ".complete").stat().st_mtime_ns == stamp


def test_cli_writes_the_set_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [str(tmp_path / "out"), "--tracks-per-class", "2", "--seconds", "0.5", "--seed", "1", "--sample-rate", "22050"]
    )
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "4 files" in out and str(tmp_path / "out") in out
    files = sorted((tmp_path / "out").rglob("*.*"))
    assert len(files) == 4 and _probe(files[0])[1] == 22050
