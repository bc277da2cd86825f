"""python -m metalcore.bench: every row it promises is computed (never how fast: timings live in the bench).

The study's data path is the baseline, so its pieces must be what the study read, and both training
pipelines must report a throughput from which the study's run is extrapolated.
"""

from __future__ import annotations

import re
import wave

import numpy as np
import pytest
import torch
from conftest import run_module, tiny_overrides, train_config

from metalcore.benchmarks.sources import PIECES, cut_pieces
from metalcore.benchmarks.study import LENGTH, StudyClips, read_wav
from metalcore.benchmarks.sweeps import ways
from metalcore.benchmarks.training import STUDY_CLIPS, STUDY_EPOCHS, metalcore_pipeline, study_pipeline
from metalcore.models.crnn import CRNN
from metalcore.training.experiment import build


def test_quick_benchmark_prints_build_loader_and_front_end_rows():
    result = run_module("metalcore.bench", "--quick", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^metalcore benchmark on .+, \d+ cores.*; load average [\d.]+ on \d+ cores", out, re.M)
    for fmt in ("mp3", "flac", "ogg", "m4a"):  # per core and total, each in x realtime, with the verdict
        assert re.search(rf"^{fmt}\s+\d+x in [\d.]+ s\s+\d+x in [\d.]+ s\s+>= 150x (met|MISSED)$", out, re.M), fmt
    for path in (
        "study: WAV piece + CPU Mel per clip",
        "naive: decode whole file + CPU Mel per clip",
        "metalcore: memory-mapped int16 slices",
        "metalcore + CPU Mel per batch",
    ):
        for workers in (0, 2):
            assert re.search(rf"^{re.escape(path)}\s+{workers}\s+[\d.]+\s+[\d.]+x$", out, re.M), (path, workers)
    assert re.search(r"^study: MelSpectrogram.+\s[\d.]+\s+1\.00x\s*$", out, re.M)
    assert re.search(
        r"^metalcore: MelFrontend.+\s[\d.]+\s+[\d.]+x  no slower than the study's (met|MISSED)$", out, re.M
    )


@pytest.mark.slow
def test_quick_train_benchmark_prints_both_pipelines_for_both_networks():
    result = run_module("metalcore.bench", "--train", "--quick", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(
        r"^(study|ours)\s+(study: .+?|metalcore, .+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+(\d+:\d\d)",
        result.stdout,
        re.M,
    )
    assert {(network, label.split(":")[0].split(",")[0]) for network, label, *_ in rows} == {
        (n, p) for n in ("study", "ours") for p in ("study", "metalcore")
    }
    assert re.search(
        r"^study\s+metalcore, (32-true|bf16-mixed), channels-last \(the defaults\) .+>= 1\.3x (met|MISSED)$",
        result.stdout,
        re.M,
    )


def test_pieces_are_the_studys_sixtieths_of_a_track(tmp_path):
    pcm = np.random.default_rng(0).integers(-32768, 32767, (60 * 441 + 17, 2), dtype=np.int16)
    pieces = cut_pieces(pcm, tmp_path, "t")
    assert len(pieces) == PIECES == 60
    with wave.open(str(pieces[0])) as f:
        assert (f.getnchannels(), f.getframerate(), f.getsampwidth(), f.getnframes()) == (2, 44100, 2, 441)
    joined = np.concatenate([read_wav(str(p)) for p in pieces], axis=1)
    assert np.array_equal(joined, pcm[: 60 * 441].T / np.float32(32768))  # the remainder is dropped, as there
    spec, label = StudyClips(pieces[:1], [1])[0]  # padded to 5.5 s, then Mel + dB
    assert spec.shape == (2, 64, LENGTH // 512 + 1) and label == 1


@pytest.mark.filterwarnings("ignore")
def test_both_training_pipelines_report_a_throughput(tmp_path, cache_dir, demo_root):
    """Two epochs of each pipeline, same network: first-epoch and steady rates, and the study's run.

    Asked for more steps than the data has, each rate counts the clips that really trained (8 tracks
    x 6 crops; the study's 60 pieces), not the steps asked for.
    """
    cfg = train_config(*tiny_overrides(cache_dir), f"paths.output_dir={tmp_path}", "model=study")
    ours = metalcore_pipeline(lambda: build(cfg), "cpu", "32-true", batches=100)
    pieces = cut_pieces(np.zeros((60 * 4410, 2), np.int16) + 100, tmp_path / "pieces", "t")
    net = CRNN(2, gru_hidden=8, gru_layers=1, bidirectional=False, pooling="last", channels=(4, 8))
    study = study_pipeline(net, pieces, [k % 2 for k in range(60)], torch.device("cpu"), workers=0, batches=100)
    assert (ours.clips, study.clips) == (8 * 6, 60)
    for speed in (ours, study):
        assert speed.first > 0 and speed.steady > 0
        assert speed.study_run() >= STUDY_CLIPS * STUDY_EPOCHS / speed.steady


def test_sweep_ways_compare_one_job_at_a_time_with_joblib_jobs_and_thread_budgets():
    labels, launchers = zip(*ways(4))
    assert labels[0] == "one at a time, 4 threads" and launchers[0] == ()
    for launcher, threads in zip(launchers[1:], (1, 4)):
        assert {"hydra/launcher=joblib", "hydra.launcher.n_jobs=4", f"threads={threads}"} == set(launcher)


@pytest.mark.slow
def test_sweep_benchmark_times_every_way():
    result = run_module("metalcore.bench", "--sweep", "2", "--sweep-crops", "6", "--workers", "2", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^(one at a time|joblib), .+?\s+([\d.]+)\s+(\d+)\s+([\d.]+)x$", result.stdout, re.M)
    assert [way for way, *_ in rows] == ["one at a time", "joblib", "joblib"]
    assert rows[0][3] == "1.00" and all(float(seconds) > 0 for _, seconds, *_ in rows)


@pytest.mark.slow
def test_probe_benchmark_times_a_sweep_with_features_computed_then_cached(musicnn_cache):
    wheels = str(musicnn_cache / "pretrained")  # the session's wheel: nothing downloaded again
    result = run_module("metalcore.bench", "--probe", "2", "--quick", env={"METALCORE_PRETRAINED_WHEELS": wheels})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^features (computed|cached) .+?\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", result.stdout, re.M)
    assert [kind for kind, *_ in rows] == ["computed", "cached"]
    assert all(float(wall) > 0 and float(cpu) > 0 for _, wall, _, cpu in rows)
