"""The statistics behind every interval and comparison metalcore prints, checked against known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metalcore.evaluation.paired import compare, mcnemar_exact
from metalcore.inference.tracks import TrackPrediction
from metalcore.scoring.metrics import classification_metrics
from metalcore.scoring.pooling import pool_tracks
from metalcore.scoring.pooling_metric import TrackPooling, pooled_clips, pooled_tracks
from metalcore.uncertainty import trust
from metalcore.uncertainty.bootstrap import track_intervals, weighted_scores
from metalcore.uncertainty.calibration import ece, fit_temperature, temper, track_nll


def simulated_test_set(rng: np.random.Generator, tracks: int, clips: int, skill: np.ndarray):
    """A classifier whose clips of one track succeed together: track ``t`` is heard right with
    probability ``skill[t]`` per clip. Returns clip probabilities, labels and track ids (two classes)."""
    labels = np.repeat(rng.integers(0, 2, tracks), clips)
    track_ids = np.repeat(np.arange(tracks), clips)
    right = rng.random(tracks * clips) < np.repeat(skill, clips)
    confidence = rng.uniform(0.55, 1.0, tracks * clips)
    p_true = np.where(right, confidence, 1 - confidence)
    probs = np.zeros((tracks * clips, 2))
    probs[np.arange(len(labels)), labels] = p_true
    probs[np.arange(len(labels)), 1 - labels] = 1 - p_true
    return probs, labels, track_ids


def test_training_evaluation_and_predict_pool_a_track_the_same_way():
    rng = np.random.default_rng(3)
    tracks = rng.permutation(np.repeat([7, 2, 9], [5, 1, 3]))  # uneven clip counts, ids out of order
    probs = rng.dirichlet(np.ones(3), size=len(tracks))
    labels = np.array([{7: 0, 2: 2, 9: 1}[t] for t in tracks])
    pooling = TrackPooling()  # training's form (torch, gathered across processes)
    pooling.update(torch.from_numpy(probs), torch.from_numpy(labels), torch.from_numpy(tracks))
    torch_probs, torch_labels = pooled_tracks(pooling)
    numpy_probs, numpy_labels, _ = pool_tracks(probs, labels, tracks)  # the bootstrap's, evaluate's
    expected = np.stack([probs[tracks == t].mean(0) for t in (2, 7, 9)])  # ascending track ids
    np.testing.assert_allclose(torch_probs.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(numpy_probs, expected, rtol=1e-12)
    assert torch_labels.tolist() == numpy_labels.tolist() == [2, 0, 1]
    assert np.array_equal(pooled_clips(pooling)[2], tracks)
    one = TrackPrediction(Path("x.wav"), ["a", "b", "c"], 9.0, np.arange(5.0), 2.0, probs[tracks == 7])
    np.testing.assert_allclose(one.probs, expected[1], rtol=1e-12)  # predict's form


def test_numpy_metrics_match_the_training_module_metrics():
    """The bootstrap recomputes the module's metrics in NumPy: they must be the same numbers."""
    rng = np.random.default_rng(0)
    for classes in (2, 3):
        labels = rng.integers(0, classes, 60)
        probs = rng.dirichlet(np.ones(classes), 60).round(2)  # ties in the scores
        probs /= probs.sum(1, keepdims=True)
        reference = classification_metrics(classes)(torch.tensor(probs), torch.tensor(labels))
        ours = weighted_scores(probs, labels, np.ones((1, 60)))
        for name, value in reference.items():
            assert ours[name][0] == pytest.approx(float(value), abs=1e-6), name


def test_cluster_bootstrap_covers_the_true_accuracy_at_the_nominal_rate():
    """Simulated test sets of 30 tracks x 10 clips from a population whose clip accuracy is known:
    the 95 % interval over tracks covers it about 95 % of the time. Clips of a track succeed
    together here (intra-track correlation 0.3), so resampling clips as if independent would give
    intervals half as wide, covering about 70 % of the time."""
    rng = np.random.default_rng(0)
    alpha, beta = 1.6, 0.6  # per-track skill ~ Beta: some songs are hard from start to end
    truth = alpha / (alpha + beta)  # the population's clip accuracy
    trials = 120
    covered = 0
    for trial in range(trials):
        probs, labels, tracks = simulated_test_set(rng, 30, 10, rng.beta(alpha, beta, 30))
        low, high = track_intervals(probs, labels, tracks, resamples=300, seed=trial)["clip"]["acc"]
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_is_seeded_and_a_perfect_score_still_gets_a_width():
    rng = np.random.default_rng(1)
    probs, labels, tracks = simulated_test_set(rng, 12, 5, np.full(12, 0.8))
    assert track_intervals(probs, labels, tracks, seed=3) == track_intervals(probs, labels, tracks, seed=3)
    perfect, _, _ = simulated_test_set(rng, 12, 5, np.ones(12))
    perfect_labels = perfect.argmax(1)
    low, high = track_intervals(perfect, perfect_labels, tracks)["track"]["acc"]
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 12))  # exact binomial: 12 of 12 -> 0.735


@pytest.mark.parametrize(
    "only_a, only_b, p",
    [
        (0, 0, 1.0),
        (5, 0, 0.0625),  # 2 * (1/2)^5
        (6, 1, 0.125),  # 2 * (1 + 7) / 128
        (3, 3, 1.0),
        (10, 2, 0.0386),  # 2 * (1 + 12 + 66) / 4096 = 0.03857
        (1, 9, 0.0215),  # 2 * (1 + 10) / 1024 = 0.02148
    ],
)
def test_exact_mcnemar_matches_hand_computed_values(only_a, only_b, p):
    assert mcnemar_exact(only_a, only_b) == pytest.approx(p, abs=5e-5)


def test_paired_comparison_counts_discordant_tracks_and_marks_real_differences():
    tracks = np.arange(40)
    a = np.ones(40, bool)
    b = np.ones(40, bool)
    b[:12] = False  # A right on 12 tracks B gets wrong, never the reverse
    result = compare(a, b, tracks)
    assert (result.only_a, result.only_b, result.pairs, result.tracks) == (12, 0, 40, 40)
    assert result.difference == pytest.approx(0.3)
    assert result.interval[0] > 0 and result.real
    c = a.copy()
    c[:2] = False  # two tracks of difference: no evidence
    assert not compare(a, c, tracks).real


def scaled_logits(rng: np.random.Generator, tracks: int, scale: float):
    """One clip per track, three classes, right about 75 % of the time; logits multiplied by
    ``scale`` (4: over-confident, saying 0.99; 1: about honest). Clip probabilities, labels, track ids."""
    labels = rng.integers(0, 3, tracks)
    logits = rng.normal(0, 1, (tracks, 3))
    logits[np.arange(tracks), labels] += 1.5
    probs = np.exp(scale * logits) / np.exp(scale * logits).sum(1, keepdims=True)
    return probs, labels, np.arange(tracks)


def test_temperature_lowers_the_ece_of_an_over_confident_model():
    """Logits scaled up 4x: right 75 % of the time, saying 0.99. The temperature fitted on one set
    of tracks makes the confidence honest on another."""
    rng = np.random.default_rng(0)
    val, test = scaled_logits(rng, 400, 4.0), scaled_logits(rng, 400, 4.0)
    temperature = fit_temperature(*val)
    assert temperature > 1.5  # softens
    before, after = ece(test[0], test[1]), ece(temper(test[0], temperature), test[1])
    assert before > 0.1 and after < before / 2
    assert (temper(test[0], temperature).argmax(1) == test[0].argmax(1)).all()  # predictions unchanged
    assert np.allclose(temper(temper(test[0], temperature), 1 / temperature), test[0])


def test_the_runs_temperature_is_fitted_on_the_validation_tracks_never_the_test_tracks():
    """metrics.json's calibration: T from the (over-confident) validation clips, not from the (honest)
    test clips, whose ECE it then reports before and after."""
    rng = np.random.default_rng(1)
    val, test = scaled_logits(rng, 300, 4.0), scaled_logits(rng, 200, 1.0)
    from_val, from_test = fit_temperature(*val), fit_temperature(*test)
    assert from_val > 2 * from_test  # the two sets call for clearly different temperatures
    results = {level: {"acc": float((test[0].argmax(1) == test[1]).mean())} for level in ("clip", "track")}
    calibration = trust.summary(results, {"val": val, "test": test}, seed=0)["calibration"]
    assert calibration["temperature"] == from_val and calibration["fitted_on"] == "validation tracks"
    assert calibration["val_track_nll"]["before"] == pytest.approx(track_nll(*val, 1.0))
    assert calibration["test_track_ece"] == {
        "before": pytest.approx(ece(test[0], test[1])),
        "after": pytest.approx(ece(temper(test[0], from_val), test[1])),
    }


def test_ece_weights_each_confidence_bin_by_its_clips():
    """Two of the 15 bins in use: three clips at confidence 0.62, two of them right (gap 2/3 - 0.62),
    and one at 0.9, right (gap 0.1). ECE = (3 * 0.04667 + 1 * 0.1) / 4 = 0.06; an unweighted mean
    of the two bins' gaps would say 0.0733."""
    probs = np.array([[0.62, 0.38], [0.62, 0.38], [0.38, 0.62], [0.9, 0.1]])
    labels = np.array([0, 0, 0, 0])  # the third clip is wrong
    assert ece(probs, labels) == pytest.approx((3 * abs(2 / 3 - 0.62) + 0.1) / 4)
    assert ece(probs, labels) == pytest.approx(0.06)


def test_no_temperature_when_every_validation_track_is_right_by_a_margin():
    probs = np.tile([[0.9, 0.1]], (20, 1))
    assert fit_temperature(probs, np.zeros(20, dtype=int), np.arange(20)) is None
