"""``python -m metalcore.evaluate`` and track-level checkpoint selection.

Evaluation scores the test split the run recorded (or a new folder), per clip and per track, and
writes metrics.json, confusion.png and tracks.csv with the worst mistakes first.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CALIBRATED_TEMPERATURE, METRICS, read_metrics, run_module, tiny_overrides

from metalcore import evaluate
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import predict_files
from metalcore.uncertainty.calibration import ece


@pytest.fixture(scope="module")
def checkpoint(trained_run) -> Path:
    return Path(read_metrics(trained_run)["best_checkpoint"])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def evaluated(calibrated_checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """``python -m metalcore.evaluate`` on the run's test split with a checkpoint calibrated at T = 2:
    its output folder and what it printed."""
    out = tmp_path_factory.mktemp("evaluated")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert evaluate.main([str(calibrated_checkpoint), "--output-dir", str(out)]) == 0
    return out, printed.getvalue()


def test_evaluate_scores_the_runs_test_split(trained_run, calibrated_checkpoint, evaluated):
    out, printed = evaluated
    assert "track: acc" in printed
    test_tracks = [row for row in read_rows(trained_run / "split.csv") if row["split"] == "test"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["hardcore", "metal"] and metrics["checkpoint"] == str(calibrated_checkpoint)
    clips = sum(math.ceil(float(row["duration_s"]) / 2.0) for row in test_tracks)  # 2 s windows, end to end
    assert metrics["counts"] == {"tracks": len(test_tracks), "clips": clips, "failed": 0}
    for level, total in (("clip", clips), ("track", len(test_tracks))):
        assert set(metrics[level]) >= METRICS and sum(map(sum, metrics[level]["confusion"])) == total
    assert metrics["track"]["acc"] >= 0.75 and metrics["clip"]["acc"] >= 0.7  # as the run's own test scores
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_rows(out / "tracks.csv")
    assert {Path(r["path"]) for r in rows} == {Path(r["path"]) for r in test_tracks}
    assert all(r["true"] == {Path(t["path"]): t["class"] for t in test_tracks}[Path(r["path"])] for r in rows)
    order = [(r["correct"] == "True", float(r["p_true"])) for r in rows]
    assert order == sorted(order)  # mistakes first, the most confident ones first; then the closest calls
    assert float(rows[0]["confidence"]) == pytest.approx(max(float(rows[0]["p_hardcore"]), float(rows[0]["p_metal"])))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_evaluate_measures_calibration_before_the_temperature_on_the_networks_own_probabilities(
    trained_run, calibrated_checkpoint, evaluated
):
    """ECE "before" comes from softmax(logits), "after" from softmax(logits / T), each clip's
    probabilities pooled per track by their mean; both computed here from the network's logits."""
    out, printed = evaluated
    calibration = json.loads((out / "metrics.json").read_text())["calibration"]
    network = Classifier.from_checkpoint(calibrated_checkpoint, "cpu")
    network.temperature = 1.0  # the network's own probabilities: softmax of its logits
    tracks = [(Path(r["path"]), r["class"]) for r in read_rows(trained_run / "split.csv") if r["split"] == "test"]
    predictions = [o.prediction for o in predict_files(network, [path for path, _ in tracks], progress=False)]
    labels = np.array([network.classes.index(label) for _, label in tracks])
    own = np.stack([p.segment_probs.mean(0) for p in predictions])
    log_probs = [np.log(p.segment_probs) for p in predictions]  # the logits, up to a constant per clip
    tempered = np.stack([softmax(z / CALIBRATED_TEMPERATURE).mean(0) for z in log_probs])
    assert calibration["temperature"] == CALIBRATED_TEMPERATURE
    assert calibration["track_ece"]["before"] == pytest.approx(ece(own, labels), abs=1e-6)
    assert calibration["track_ece"]["after"] == pytest.approx(ece(tempered, labels), abs=1e-6)
    assert abs(calibration["track_ece"]["after"] - calibration["track_ece"]["before"]) > 0.05  # T = 2 shows
    assert f"ECE per track {ece(own, labels):.4f} -> {ece(tempered, labels):.4f}" in printed


def test_evaluate_another_folder_lists_bad_files_last(demo_root, checkpoint, tmp_path, capsys):
    root = tmp_path / "other"
    for genre in ("hardcore", "metal"):
        (root / genre).mkdir(parents=True)
        for track in sorted((demo_root / genre).iterdir())[:2]:
            shutil.copy(track, root / genre / track.name)
    (root / "metal" / "Broken - Track.mp3").write_text("not audio")
    assert evaluate.main([str(checkpoint), "--data-root", str(root)]) == 0
    out = checkpoint.parent.parent / "evaluation" / f"{checkpoint.stem}-other"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"] == {"tracks": 4, "clips": 16, "failed": 1} and metrics["data"] == str(root)
    assert metrics["failed"][0]["path"].endswith("Broken - Track.mp3")
    rows = read_rows(out / "tracks.csv")
    assert len(rows) == 5 and rows[-1]["error"].startswith("not an audio file") and rows[-1]["predicted"] == ""
    assert "skipped" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["no split", "unknown class", "foreign checkpoint"])
def test_evaluate_refuses_with_one_line(checkpoint, demo_root, tmp_path, capsys, case):
    if case == "no split":  # a checkpoint copied away from its run
        args = [str(shutil.copy(checkpoint, tmp_path / "model.ckpt"))]
        words = "--data-root"
    elif case == "unknown class":
        (tmp_path / "jazz").mkdir()
        shutil.copy(next((demo_root / "metal").iterdir()), tmp_path / "jazz" / "Take - Five.wav")
        shutil.copytree(demo_root / "metal", tmp_path / "metal")
        args, words = [str(checkpoint), "--data-root", str(tmp_path)], "['jazz'] are not classes this model knows"
    else:
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
        args, words = [str(tmp_path / "other.ckpt")], "not a metalcore checkpoint"
    with pytest.raises(SystemExit) as stop:
        evaluate.main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err


# slow: the trained run logs val/track_f1 every epoch (test_train.py's TensorBoard test) and its
# metrics.json names the monitored checkpoint's score (test_the_optimised_value_is_...)
@pytest.mark.slow
def test_checkpoint_selection_can_monitor_the_track_f1(tmp_path, cache_dir, demo_root):
    """Validation pools per track, so the best checkpoint can be the one with the best track-level F1.

    Every epoch is kept (``save_top_k=-1``) so the test sees each epoch's score and which one won.
    """
    run_dir = tmp_path / "run"
    result = run_module(
        "metalcore.train",
        *tiny_overrides(
            cache_dir,
            f"hydra.run.dir={run_dir}",
            "trainer.max_epochs=2",
            "callbacks.model_checkpoint.monitor=val/track_f1",
            "callbacks.model_checkpoint.mode=max",
            "callbacks.model_checkpoint.save_top_k=-1",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["monitor"]["metric"] == "val/track_f1" and 0 <= metrics["monitor"]["best"] <= 1
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint") and "val/track_f1" in k]
    assert state["monitor"] == "val/track_f1"
    scores = {Path(path).name: float(score) for path, score in state["best_k_models"].items()}
    assert sorted(scores) == ["epoch000.ckpt", "epoch001.ckpt"]
    assert metrics["monitor"]["best"] == max(scores.values())
    assert scores[Path(metrics["best_checkpoint"]).name] == max(scores.values())
