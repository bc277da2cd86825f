"""``python -m metalcore.predict``: whole tracks in any format, broken files as rows, tables, timelines.

The checkpoint is the session's ``trained_run`` (16 kHz stereo, 2 s segments). The first test runs
the real command in an empty folder with a copy of the checkpoint alone: no config, no data folder,
no run folder, which is what "the checkpoint carries everything" promises.
"""

from __future__ import annotations

import csv
import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CALIBRATED_TEMPERATURE, read_metrics, run_module
from hydra.utils import instantiate

from metalcore import predict
from metalcore.audio.decode import decode, stream
from metalcore.audio.encode import SUFFIXES, write_audio
from metalcore.audio.pcm import to_float
from metalcore.data.demo import render_track
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import predict_track, windows
from metalcore.training.module import GenreClassifier

SR = 22050  # the rate the test tracks are written at; the model decodes them to 16 kHz


@pytest.fixture(scope="module")
def checkpoint(trained_run) -> Path:
    return Path(read_metrics(trained_run)["best_checkpoint"])


@pytest.fixture(scope="module")
def classifier(checkpoint) -> Classifier:
    return Classifier.from_checkpoint(checkpoint, "cpu")


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, np.ndarray]:
    """A new metal and a new hardcore song of 5 s, never seen in training."""
    return {genre: render_track(genre, np.random.default_rng(123), 5.0, SR) for genre in ("metal", "hardcore")}


def broken_files(folder: Path) -> dict[str, str]:
    """File name -> the words its error row must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("these are not audio samples\n" * 20)
    (folder / "readme.txt").write_text("not audio either")
    wav = write_audio(folder / "cut.wav", np.zeros((2, 100), np.float32), SR).read_bytes()
    (folder / "header-only.flac").write_bytes(b"fLaC" + wav[4:40])
    return {
        "empty.wav": "empty file",
        "notes.mp3": "not an audio file",
        "readme.txt": "not an audio file",
        "header-only.flac": "",
        "missing.ogg": "file not found",
    }


def test_every_format_and_broken_files_in_a_clean_directory(tmp_path, checkpoint, songs):
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(checkpoint, clean / "model.ckpt")
    music = clean / "music"
    for genre, audio in songs.items():
        (music / genre).mkdir(parents=True)
        for suffix in SUFFIXES:
            write_audio(music / genre / f"{genre}{suffix}", audio, SR)
    broken = broken_files(clean / "broken")
    paths = ["music", *(f"broken/{name}" for name in broken)]
    result = run_module("metalcore.predict", "model.ckpt", *paths, "--output", "out.csv", cwd=clean)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    with open(clean / "out.csv", newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert len(rows) == 2 * len(SUFFIXES) + len(broken)
    for genre in songs:
        reference = float(rows[f"{genre}.wav"]["p_metal"])
        for suffix in SUFFIXES:
            row = rows[f"{genre}{suffix}"]
            assert row["label"] == genre and not row["error"], row
            assert abs(float(row["p_metal"]) - reference) < 0.1, row  # lossy codecs barely move it
            assert int(row["segments"]) == 3 and float(row["duration_s"]) == pytest.approx(5.0, abs=0.1)
    for name, words in broken.items():
        row = rows[name]
        assert row["label"] == "" and row["error"] and words in row["error"], row
        assert f"{name}" in result.stdout and "error: " in result.stdout
    table = result.stdout.splitlines()
    assert table[0].split() == ["track", "label", "confidence", "segments", "duration"]


def test_exit_status_is_nonzero_only_when_nothing_was_predicted(tmp_path, checkpoint, songs, capsys):
    broken = broken_files(tmp_path / "broken")
    assert predict.main([str(checkpoint), *(str(tmp_path / "broken" / name) for name in broken)]) == 1
    out, err = capsys.readouterr()
    assert "none of the" in err and out.count("error: ") == len(broken)
    empty = tmp_path / "no-audio"
    empty.mkdir()
    assert predict.main([str(checkpoint), str(empty)]) == 1
    assert "no audio files in this folder" in capsys.readouterr().out
    good = write_audio(tmp_path / "good.flac", songs["metal"], SR)
    assert predict.main([str(checkpoint), str(good), str(tmp_path / "broken" / "empty.wav")]) == 0


def foreign_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (file, words the one-line message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.ckpt").write_text("not a checkpoint")
    (folder / "split.csv").write_text("split,class,artist,duration_s,path\ntrain,metal,A,8.00,/x.wav\n")
    torch.save({"weights": torch.zeros(3)}, folder / "plain.pt")
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {
                "spec": {
                    "classes": ["a", "b"],
                    "data": {"sample_rate": 16000, "channels": 2, "segment_seconds": 1.0},
                    "features": {"_target_": "os.system", "command": "echo hacked"},
                    "model": {},
                }
            },
        },
        folder / "evil.ckpt",
    )
    new_layout = {
        "classes": ["a", "b"],
        "sample_rate": 16000,
        "channels": 2,
        "segment_seconds": 1.0,
        "features": {"_target_": "metalcore.models.frontend.MelFrontend", "sample_rate": 16000, "n_mels": 32},
        "model": {"_target_": "metalcore.models.stats.MelStats", "num_classes": 2, "in_channels": 2, "n_mels": 32},
    }
    torch.save({"state_dict": {}, "hyper_parameters": {"spec": {**new_layout, "channels": 0}}}, folder / "zero.ckpt")
    not_a_network = {**new_layout, "model": {"_target_": "metalcore.models.conv.ConvStack"}}
    torch.save({"state_dict": {}, "hyper_parameters": {"spec": not_a_network}}, folder / "conv.ckpt")
    return {
        "missing": (folder / "nope.ckpt", "checkpoint not found"),
        "text": (folder / "text.ckpt", "not a readable metalcore checkpoint"),
        "table": (folder / "split.csv", "not a readable metalcore checkpoint"),
        "plain": (folder / "plain.pt", "not a metalcore checkpoint"),
        "evil": (folder / "evil.ckpt", "not a metalcore module"),
        "zero channels": (folder / "zero.ckpt", "channels=0 (1 or 2)"),
        "not a network": (folder / "conv.ckpt", "ConvStack is not a metalcore.models.base.Network"),
    }


@pytest.mark.parametrize("name", ["missing", "text", "table", "plain", "evil", "zero channels", "not a network"])
def test_a_missing_or_foreign_checkpoint_is_one_clear_line(tmp_path, songs, capsys, name):
    path, words = foreign_checkpoints(tmp_path)[name]
    good = write_audio(tmp_path / "good.wav", songs["metal"], SR)
    with pytest.raises(SystemExit) as stop:
        predict.main([str(path), str(good)])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {path}: ") and words in err and "Traceback" not in err


def test_a_checkpoint_with_the_untyped_spec_layout_still_loads(tmp_path, checkpoint, classifier):
    """Checkpoints written before ModelSpec nest sample rate, channels and segment under ``data``."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    spec = saved["hyper_parameters"]["spec"]
    data = {key: spec.pop(key) for key in ("sample_rate", "channels", "segment_seconds")}
    saved["hyper_parameters"]["spec"] = {**spec, "data": data}
    torch.save(saved, tmp_path / "old.ckpt")
    old = Classifier.from_checkpoint(tmp_path / "old.ckpt", "cpu")
    assert (old.classes, old.sample_rate, old.channels, old.segment_samples) == (
        classifier.classes,
        classifier.sample_rate,
        classifier.channels,
        classifier.segment_samples,
    )
    audio = 0.1 * torch.randn(2, 2, 32000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(old(audio), classifier(audio))


def test_a_checkpoint_without_a_temperature_says_its_confidences_are_not_calibrated(checkpoint, caplog):
    """The run fits its temperature to the checkpoint it tested; last.ckpt has none, and says which one has."""
    Classifier.from_checkpoint(checkpoint, "cpu")
    assert not caplog.records
    last = checkpoint.parent / "last.ckpt"
    Classifier.from_checkpoint(last, "cpu")
    (record,) = caplog.records
    assert record.getMessage() == (
        f"{last}: no fitted temperature, so confidences are not calibrated; "
        f"the run's tested checkpoint has one: {checkpoint.name}"
    )


def test_json_with_a_timeline_covers_the_track_end_to_end(tmp_path, checkpoint, songs, capsys):
    audio = np.concatenate([songs["hardcore"], songs["metal"][:, : SR * 2]], axis=1)  # 7 s: hardcore, then metal
    track = write_audio(tmp_path / "Band - Song.flac", audio, SR)
    out = tmp_path / "predictions.json"
    assert predict.main([str(checkpoint), str(track), "--segments", "--hop", "1.5", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["classes"] == ["hardcore", "metal"] and report["segment_seconds"] == 2.0
    assert report["hop_seconds"] == 1.5 and report["sample_rate"] == 16000
    (row,) = report["tracks"]
    assert row["error"] is None and row["duration_s"] == pytest.approx(7.0)
    timeline = row["timeline"]
    # windows every 1.5 s while they fit, then one ending exactly at the end of the track
    assert [s["start_s"] for s in timeline] == [0.0, 1.5, 3.0, 4.5, 5.0]
    assert [s["end_s"] for s in timeline] == [2.0, 3.5, 5.0, 6.5, 7.0]
    assert row["segments"] == len(timeline)
    for segment in timeline:
        assert sum(segment["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert segment["label"] == max(segment["probs"], key=segment["probs"].get)
    mean = {c: np.mean([s["probs"][c] for s in timeline]) for c in report["classes"]}
    assert row["probs"] == pytest.approx(mean, abs=1e-5) and row["label"] == max(mean, key=mean.get)
    assert row["confidence"] == pytest.approx(max(mean.values()), abs=1e-5)
    assert timeline[0]["label"] == "hardcore" and timeline[-1]["label"] == "metal"  # the song changes genre
    printed = capsys.readouterr().out
    assert "Band - Song.flac" in printed and "start" in printed and len(printed.splitlines()) >= 2 + 2 + len(timeline)


def test_csv_with_segments_writes_a_timeline_beside_the_table(tmp_path, checkpoint, songs):
    tracks = [write_audio(tmp_path / f"{genre}.wav", audio, SR) for genre, audio in songs.items()]
    out = tmp_path / "table.csv"
    assert (
        predict.main([str(checkpoint), *map(str, tracks), str(tmp_path / "gone.wav"), "--segments", "-o", str(out)])
        == 0
    )
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "confidence", "segments", "duration_s", "p_hardcore", "p_metal", "error"]
    assert [Path(r["path"]).name for r in rows] == ["metal.wav", "hardcore.wav", "gone.wav"]
    with open(tmp_path / "table.segments.csv", newline="") as f:
        segments = list(csv.DictReader(f))
    assert list(segments[0]) == ["path", "start_s", "end_s", "label", "p_hardcore", "p_metal"]
    assert [(Path(s["path"]).name, float(s["start_s"])) for s in segments] == [
        (name, start) for name in ("metal.wav", "hardcore.wav") for start in (0.0, 2.0, 3.0)
    ]


def test_a_track_shorter_than_a_segment_is_one_padded_window(tmp_path, classifier, songs):
    short = write_audio(tmp_path / "short.wav", songs["metal"][:, : SR // 2], SR)
    prediction = predict_track(classifier, short)
    assert prediction.segment_probs.shape == (1, 2) and prediction.starts.tolist() == [0.0]
    assert prediction.duration == pytest.approx(0.5)


def test_segments_equal_the_lightning_module_on_the_same_windows(tmp_path, calibrated_checkpoint, songs):
    """predict_track's probabilities are the trained module's own logits on each window divided by the
    temperature stored in the checkpoint (2 here), then softmaxed."""
    saved = torch.load(calibrated_checkpoint, weights_only=True)
    spec, temperature = saved["hyper_parameters"]["spec"], saved["calibration"]["temperature"]
    assert temperature == CALIBRATED_TEMPERATURE
    module = GenreClassifier.load_from_checkpoint(
        calibrated_checkpoint,
        frontend=instantiate(spec["features"]),
        net=instantiate(spec["model"]),
        optimizer=None,
        map_location="cpu",
    ).eval()
    track = write_audio(tmp_path / "song.wav", songs["hardcore"], SR)
    audio = torch.from_numpy(decode(track, 16000, 2))
    windows_ = torch.stack([audio[:, start : start + 32000] for start in (0, 32000, audio.shape[1] - 32000)])
    with torch.no_grad():
        expected = (module(windows_) / temperature).softmax(-1).numpy()
    classifier = Classifier.from_checkpoint(calibrated_checkpoint, "cpu")
    assert predict_track(classifier, track).segment_probs == pytest.approx(expected, abs=1e-5)


def test_predict_turns_int16_samples_into_floats_as_training_does(tmp_path, classifier, songs):
    """The network hears a file's samples at the scale it was trained on: int16 / 32768, as the
    DataModule turns its int16 batches into floats (``to_float``), to the last bit."""
    track = write_audio(tmp_path / "song.wav", songs["metal"], 16000)  # 16-bit PCM at the model's rate
    pcm = np.concatenate(list(stream(track, 16000, 2)))  # (frames, channels) int16, as the cache stores it
    heard = []
    hook = classifier.frontend.register_forward_pre_hook(lambda module, args: heard.append(args[0].clone()))
    try:
        starts = (predict_track(classifier, track, batch_size=1).starts * 16000).round().astype(int)
    finally:
        hook.remove()
    assert pcm.dtype == np.int16 and np.abs(pcm).max() > 10000
    assert len(heard) == len(starts) > 1
    for start, audio in zip(starts, heard):
        expected = to_float(torch.from_numpy(np.ascontiguousarray(pcm[start : start + 32000].T))[None])
        assert torch.equal(audio, expected)


@pytest.mark.parametrize(
    "frames, length, hop, block, starts",
    [
        (10, 4, 4, 3, [0, 4, 6]),  # the last window ends at the end of the track
        (12, 4, 4, 5, [0, 4, 8]),  # an exact fit adds nothing
        (10, 4, 2, 1, [0, 2, 4, 6]),  # overlapping windows
        (10, 4, 6, 7, [0, 6]),  # hop longer than a window still reaches the end
        (3, 4, 4, 2, [0]),  # shorter than a window: one, zero-padded
    ],
)
def test_windows_cover_the_stream(frames, length, hop, block, starts):
    pcm = np.arange(frames * 2, dtype=np.int16).reshape(frames, 2)
    got = [
        (start, window.copy())
        for start, window in windows((pcm[i : i + block] for i in range(0, frames, block)), length, hop)
    ]
    assert [start for start, _ in got] == starts
    for start, window in got:
        expected = np.zeros((length, 2), np.int16)
        expected[: min(length, frames - start)] = pcm[start : start + length]
        assert np.array_equal(window, expected)


def test_an_hour_streams_in_bounded_memory():
    """Windowing an hour of stereo 44.1 kHz (300 MB as int16) holds about one block and one window."""
    block = np.ones((65536, 2), np.int16)
    hour = 3600 * 44100
    tracemalloc.start()
    count = sum(
        1
        for _ in windows(
            (block[: min(65536, hour - i)].copy() for i in range(0, hour, 65536)),
            round(5.5 * 44100),
            round(5.5 * 44100),
        )
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == int(np.ceil(3600 / 5.5))
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_a_track_shorter_than_a_segment_gets_a_note(tmp_path, checkpoint, capsys):
    """A 1-sample file was labelled ``hardcore 1.000`` with no word about the silence around it."""
    short = write_audio(tmp_path / "Band - Blip.wav", np.full((2, 1), 0.5, dtype=np.float32), 16000)
    assert predict.main([str(checkpoint), str(short)]) == 0
    err = capsys.readouterr().err
    assert f"note: {short} is shorter than a segment (0.000 s of 2 s): padded with silence to one segment" in err
