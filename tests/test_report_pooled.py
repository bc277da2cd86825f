"""The report's pooled sections on hand-made job folders: out-of-fold scores, suspected labels, paired tests."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from test_report import make_job, write_multirun

from metalcore.evaluation import pooled, sweep
from metalcore.report import main as report

TRACKS = [(f"/music/{label}/{label}{i}.flac", label) for label in ("hardcore", "metal") for i in range(10)]


def write_test_tracks(job: Path, fold: int, wrong: set[str], p_wrong: float = 0.9) -> None:
    """The TRACKS of ``fold`` as a job's test_tracks.csv; those in ``wrong`` predicted as the other class."""
    rows = []
    for i, (path, true) in enumerate(TRACKS):
        if i % 2 != fold:
            continue
        other = "metal" if true == "hardcore" else "hardcore"
        predicted, confidence = (other, p_wrong) if path in wrong else (true, 0.95)
        p_metal = confidence if predicted == "metal" else 1 - confidence
        rows.append([path, true, predicted, confidence, 1 - p_metal, p_metal])
    with open(job / "test_tracks.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "true", "predicted", "confidence", "p_hardcore", "p_metal"], *rows])


def write_crossval(root: Path, seeds: tuple[int, ...] = ()) -> Path:
    """model=crnn,cnn x data.split.fold=0,1 (x seed=``seeds``): crnn misses one track (confidently),
    cnn that one and 13 more; every seed predicts alike."""
    root.mkdir()
    seeding = [[f"seed={seed}"] for seed in seeds] or [[]]
    write_multirun(
        root,
        [
            "model=crnn,cnn",
            "data.split.folds=2",
            "data.split.fold=0,1",
            *([f"seed={','.join(map(str, seeds))}"] * bool(seeds)),
        ],
    )
    suspect = TRACKS[0][0]  # even index: in fold 0
    cnn_misses = {path for path, _ in TRACKS[:14]}
    num = 0
    for model, wrong in (("crnn", {suspect}), ("cnn", cnn_misses | {suspect})):
        for seed in seeding:
            for fold in (0, 1):
                overrides = [f"model={model}", "data.split.folds=2", f"data.split.fold={fold}", *seed]
                job = make_job(root, num, overrides, 0.9)
                write_test_tracks(job, fold, wrong, p_wrong=0.97 if model == "crnn" else 0.85)
                num += 1
    return root


@pytest.fixture
def crossval_sweep(tmp_path: Path) -> Path:
    return write_crossval(tmp_path / "cv")


def test_folds_pool_into_out_of_fold_tracks_with_an_interval(crossval_sweep: Path):
    loaded = sweep.load(crossval_sweep)
    assert loaded.keys == ["model"]  # the folds are pooled like seeds
    crnn = next(g for g in loaded.groups if g.values == {"model": "crnn"})
    oof = pooled.out_of_fold(crnn.finished)
    assert oof.tracks == 20 and len(oof.rows) == 20
    assert oof.scores["acc"] == pytest.approx(19 / 20)
    low, high = oof.intervals["acc"]
    assert low < 0.95 < high <= 1.0


def test_two_seeds_of_a_track_move_together_in_the_out_of_fold_interval(crossval_sweep: Path, tmp_path: Path):
    """Two seeds that predict alike add rows, not tracks: the interval over the 20 tracks is the one
    seed's, to the last digit (resampling the 40 rows as if independent would narrow it)."""
    one_seed = next(g for g in sweep.load(crossval_sweep).groups if g.values == {"model": "crnn"})
    loaded = sweep.load(write_crossval(tmp_path / "seeds", seeds=(1, 2)))
    assert loaded.keys == ["model"]  # seeds and folds pooled
    two_seeds = next(g for g in loaded.groups if g.values == {"model": "crnn"})
    once, twice = pooled.out_of_fold(one_seed.finished), pooled.out_of_fold(two_seeds.finished)
    assert (twice.tracks, len(twice.rows)) == (20, 40) and twice.scores["acc"] == pytest.approx(19 / 20)
    assert twice.intervals == once.intervals and twice.intervals["acc"][0] < 0.9


def test_paired_comparison_over_two_seeds_counts_each_seeds_pairs(tmp_path: Path, capsys):
    """cnn misses 13 tracks crnn gets right under both seeds: 26 discordant pairs, never the reverse,
    so the exact McNemar p is 2 * 0.5 ** 26 = 2.98e-08; the difference's interval still resamples 20 tracks."""
    root = write_crossval(tmp_path / "seeds", seeds=(1, 2))
    assert report([str(root)]) == 0
    best = capsys.readouterr().out.split("## Paired against the best configuration (model=crnn)")[1]
    assert f"| 0 | 26 | {2 * 0.5**26:.4g} | real: worse |" in best and "| model=cnn | 40 | 20 | -0.6500 [" in best


def test_report_writes_oof_tracks_and_lists_suspected_labels_worst_first(crossval_sweep: Path, capsys):
    assert report([str(crossval_sweep), "--suspect-confidence", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "| model=crnn | 2 | 20 | acc 0.9500 [" in out
    with open(crossval_sweep / "oof_tracks.csv", newline="") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 40 and {r["model"] for r in oof} == {"crnn", "cnn"}
    with open(crossval_sweep / "suspected_labels.csv", newline="") as f:
        suspects = list(csv.DictReader(f))
    # the track both models put in the other class comes first: its filed class has the lowest probability
    assert suspects[0]["path"] == TRACKS[0][0] and suspects[0]["runs"] == "2"
    assert float(suspects[0]["p_filed"]) == pytest.approx((0.03 + 0.15) / 2)
    assert len(suspects) == 1  # cnn's other misses (0.85), averaged with crnn's right answers, drop out
    assert f"- {TRACKS[0][0]}: filed as hardcore, predicted metal" in out


def test_paired_comparison_against_the_best_and_a_baseline(crossval_sweep: Path, capsys):
    assert report([str(crossval_sweep), "--baseline", "model=cnn"]) == 0
    out = capsys.readouterr().out
    best = out.split("## Paired against the best configuration (model=crnn)")[1].split("##")[0]
    # cnn misses 13 tracks crnn gets right, never the reverse: p = 2 * 0.5 ** 13
    assert "| model=cnn | 20 | 20 | -0.6500 [" in best and "| 0 | 13 | 0.0002441 | real: worse |" in best
    baseline = out.split("## Paired against the baseline (model=cnn)")[1]
    assert "| model=crnn | 20 | 20 | +0.6500 [" in baseline and "| 13 | 0 | 0.0002441 | real: better |" in baseline


def test_an_unknown_baseline_names_the_configurations(crossval_sweep: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        report([str(crossval_sweep), "--baseline", "model=rnn"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert re.match(r"error: --baseline model=rnn: no configurations match .* model=crnn; model=cnn$", err[0])
