"""``python -m metalcore.report`` on sweep folders made by hand: seeds pooled, failures never dropped.

The folders look like what Hydra and ``metalcore.train`` write (``<job>/.hydra/overrides.yaml``,
``metrics.json``, ``train.log``, ``multirun.yaml``), so these tests run in a second.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from metalcore.evaluation import sweep as report
from metalcore.report import main as report_command
from metalcore.scoring import metrics


def make_job(sweep: Path, num: int, overrides: list[str], track_acc: float | None = None, log: str = "") -> Path:
    """A job folder as Hydra and train.py leave it; ``track_acc=None`` leaves out metrics.json."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "train.log").write_text(log)
    if track_acc is not None:
        scores = {"acc": track_acc, "f1": track_acc - 0.05, "confusion": [[1, 0], [0, 1]]}
        metrics = {
            "test": {"clip": {"acc": track_acc - 0.1, "f1": track_acc - 0.1}, "track": scores},
            "val": {"val/loss": 1 - track_acc, "val/track_f1": track_acc},
            "epochs": 3,
        }
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def write_multirun(sweep: Path, task: list[str]) -> None:
    """The part of multirun.yaml the report reads: the basic sweeper and the command-line overrides."""
    hydra = {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": task, "hydra": []},
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "seed": 0}))


FAILED_LOG = (
    "[2025-01-01 10:00:00,000][metalcore.train][INFO] - starting\n"
    "[2025-01-01 10:00:01,000][metalcore.train][ERROR] - job failed: RuntimeError: CUDA out of memory\n"
    "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n"
)


@pytest.fixture
def seeded_sweep(tmp_path: Path) -> Path:
    """model=crnn,cnn x seed=1,2,3: crnn at 0.9/0.8/0.7, cnn at 0.6/0.6 and one seed that failed."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun(sweep, ["data=synthetic", "model=crnn,cnn", "seed=1,2,3"])
    accs = {("crnn", 1): 0.9, ("crnn", 2): 0.8, ("crnn", 3): 0.7, ("cnn", 1): 0.6, ("cnn", 2): 0.6}
    num = 0
    for model in ("crnn", "cnn"):
        for seed in (1, 2, 3):
            acc = accs.get((model, seed))
            make_job(
                sweep,
                num,
                ["data=synthetic", f"model={model}", f"seed={seed}"],
                acc,
                log="" if acc is not None else FAILED_LOG,
            )
            num += 1
    return sweep


def test_seeds_pool_into_mean_and_std_per_configuration(seeded_sweep: Path):
    sweep = report.load(seeded_sweep, "test.track.acc")
    assert sweep.keys == ["model"]  # seed is pooled; data=synthetic is the same everywhere
    crnn, cnn = sweep.groups  # sorted best first
    assert crnn.values == {"model": "crnn"} and cnn.values == {"model": "cnn"}
    mean, std, n = crnn.stats("test.track.acc")
    assert (round(mean, 6), round(std, 6), n) == (0.8, 0.1, 3)
    assert cnn.stats("test.track.acc")[::2] == (0.6, 2) and cnn.status() == "2 ok, 1 failed"


def test_report_lists_failed_and_unfinished_jobs_and_counts_missing_ones(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun(sweep, ["model.gru_hidden=64,128,256,512"])  # four jobs asked for
    make_job(sweep, 0, ["model.gru_hidden=64"], 0.75)
    make_job(sweep, 1, ["model.gru_hidden=128"], log=FAILED_LOG)
    make_job(sweep, 2, ["model.gru_hidden=256"], log="[2025-01-01 10:00:00,000][metalcore.train][INFO] - epoch 3\n")

    assert report_command([str(sweep), "--output", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "gru_hidden" not in line]
    assert len(rows) == 3  # the failed and the unfinished job keep their rows
    assert rows[0].startswith("| 64 | 1 | 0.7500")
    assert "- 1 (failed): model.gru_hidden=128 - job failed: RuntimeError: CUDA out of memory" in out
    assert "- 2 (unfinished): model.gru_hidden=256 - no metrics.json" in out
    assert "1 of the 4 jobs the sweep asked for never started" in out
    with open(tmp_path / "t.csv") as f:
        table = {r["model.gru_hidden"]: r for r in csv.DictReader(f)}
    assert table["64"]["test.track.acc_mean"] == "0.75" and table["64"]["n"] == "1"
    assert table["128"]["status"] == "1 failed" and table["128"]["test.track.acc_mean"] == ""
    assert table["256"]["status"] == "1 unfinished"


def test_sorting_follows_the_metric_direction_and_logged_names_work(seeded_sweep: Path):
    by_loss = report.load(seeded_sweep, "val/loss")
    assert [g.values["model"] for g in by_loss.groups] == ["crnn", "cnn"]  # lowest loss first
    assert report.load(seeded_sweep, "test/track_acc").metric == "test.track.acc"
    assert metrics.canonical("test/acc") == "test.clip.acc"
    assert metrics.higher_is_better("val/track_f1") and not metrics.higher_is_better("val/loss")


def test_per_job_rows_and_plot(seeded_sweep: Path, tmp_path: Path):
    assert len(report.load(seeded_sweep, per_job=True).groups) == 6
    assert report_command([str(seeded_sweep), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_metric_and_empty_folder_are_one_line_errors(seeded_sweep: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        report_command([str(seeded_sweep), "--metric", "test.track.nope"])
    err = capsys.readouterr().err
    assert stop.value.code != 0 and "test.track.nope is not in any metrics.json" in err
    assert "Traceback" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:
        report_command([str(tmp_path / "empty")])
    assert stop.value.code != 0 and "no Hydra job folders" in capsys.readouterr().err
