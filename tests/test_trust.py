"""What a trained run and ``evaluate`` say about how far their numbers can be trusted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import read_metrics

from metalcore import evaluate
from metalcore.inference.checkpoint import Classifier


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_test_score_has_its_interval_and_the_run_lists_its_test_tracks(trained_run):
    metrics = read_metrics(trained_run)
    assert metrics["bootstrap"] == {"unit": "track", "resamples": 1000, "level": 0.95, "seed": 0}
    for level in ("clip", "track"):
        scores = metrics["test"][level]
        for name in ("acc", "f1", "precision", "recall", "f1_weighted", "auroc", "pr_auc"):
            low, high = scores[f"{name}_ci95"]
            assert 0 <= low <= scores[name] <= high <= 1, (level, name)
        # 4 test tracks: whatever the score, an interval over tracks cannot be narrow
        assert scores["acc_ci95"][1] - scores["acc_ci95"][0] > 0.2
    split = {r["path"]: r["class"] for r in read_rows(trained_run / "split.csv") if r["split"] == "test"}
    rows = read_rows(trained_run / "test_tracks.csv")
    assert {r["path"]: r["true"] for r in rows} == split
    accuracy = sum(r["predicted"] == r["true"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(metrics["test"]["track"]["acc"])
    assert "(95% intervals, tracks resampled)" in (trained_run / "train.log").read_text()


def test_the_temperature_is_fitted_stored_in_the_checkpoint_and_used(trained_run):
    metrics = read_metrics(trained_run)
    calibration = metrics["calibration"]
    assert set(calibration) >= {"temperature", "fitted_on", "test_track_ece", "test_clip_ece"}
    best = Path(metrics["best_checkpoint"])
    stored = torch.load(best, map_location="cpu", weights_only=True)["calibration"]
    assert stored["temperature"] == calibration["temperature"] > 0
    assert Classifier.from_checkpoint(best, device="cpu").temperature == calibration["temperature"]
    if "val_track_nll" in calibration:  # fitted: it cannot make the validation tracks less likely
        assert calibration["val_track_nll"]["after"] <= calibration["val_track_nll"]["before"]


def test_evaluate_reports_intervals_calibration_robustness_and_embeddings(trained_run, tmp_path, capsys):
    checkpoint = read_metrics(trained_run)["best_checkpoint"]
    out = tmp_path / "eval"
    args = [checkpoint, "--output-dir", str(out), "--perturb", "mono,gain_-12db", "--embeddings"]
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    assert "track: acc " in printed and "pr_auc" in printed and "calibration: temperature" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["track"]["acc_ci95"]) == 2 and set(metrics["calibration"]) >= {"track_ece", "clip_ece"}
    for picture in ("reliability.png", "robustness.png", "confusion.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    rows = read_rows(out / "robustness.csv")
    assert [r["perturbation"] for r in rows] == ["clean", "mono", "gain_-12db"]
    assert float(rows[0]["track_acc"]) == pytest.approx(metrics["track"]["acc"], abs=1e-6)
    for r in rows:
        assert float(r["track_acc_low"]) <= float(r["track_acc"]) <= float(r["track_acc_high"])
        assert float(r["track_acc_drop"]) == pytest.approx(float(rows[0]["track_acc"]) - float(r["track_acc"]))
    (projector,) = (out / "embeddings").rglob("metadata.tsv")
    lines = projector.read_text().splitlines()
    assert lines[0].split("\t") == ["track", "class", "split", "predicted", "confidence", "correct"]
    assert len(lines) == 1 + metrics["counts"]["tracks"] and all("\ttest\t" in line for line in lines[1:])
    assert (out / "embeddings" / "projector_config.pbtxt").is_file()
