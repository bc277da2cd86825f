"""Runs a user can follow from a log file: with output redirected (sbatch, nohup, ``> train.log 2>&1``) a
training writes one aligned line per epoch and plain progress lines, a sweep says which job runs and how
long the rest will take, metrics.json says what the run cost, and library warnings appear once.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import redirected, tiny_overrides
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from metalcore.report import main as report_command
from metalcore.training.callbacks.epoch_line import EpochLine
from metalcore.training.callbacks.progress_bar import PlainProgress, progress_bar
from metalcore.training.callbacks.timings import Timings

NUMBER = r"(\d+\.\d{4}|     -)"
EPOCH_LINE = re.compile(
    rf"\]\[metalcore\.train\]\[INFO\] - epoch (?P<epoch>[ \d]+)/(?P<total>\d+)  train loss {NUMBER}  "
    rf"val loss {NUMBER}  val track acc {NUMBER}  f1 {NUMBER}  best val/loss {NUMBER} \(epoch [ \d]+\)  "
    r"time +(?P<seconds>\d+\.\d) s +(?P<rate>\d+\.\d) clips/s  ETA (?P<eta>\d+:\d\d:\d\d)$"
)


# -- a training with its output in a file (conftest's logged_run) ------------------------------------
def test_one_aligned_line_per_epoch_in_train_log_and_on_the_console(logged_run):
    folder, console = logged_run
    log = (folder / "train.log").read_text().splitlines()
    lines = [line for line in log if "] - epoch " in line and "train loss" in line]
    assert len(lines) == 2
    matches = [EPOCH_LINE.search(line) for line in lines]
    assert all(matches), lines
    assert [int(m["epoch"]) for m in matches] == [1, 2] and {m["total"] for m in matches} == {"2"}
    assert all(float(m["seconds"]) > 0 and float(m["rate"]) > 0 for m in matches)
    assert matches[-1]["eta"] == "0:00:00"
    # aligned: every field starts at the same column on every line
    assert len({line.index("val loss") - line.index("] - ") for line in lines}) == 1
    assert len({line.index("clips/s") - line.index("] - ") for line in lines}) == 1
    # the console (a file here) shows the same lines
    assert [line for line in console.splitlines() if EPOCH_LINE.search(line)] == lines


def test_the_epoch_line_shows_the_best_value_of_the_monitored_metric(logged_run):
    folder, _ = logged_run
    line = next(line for line in (folder / "train.log").read_text().splitlines() if "] - epoch 2/2  train loss" in line)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"best val/loss {metrics['monitor']['best']:.4f}" in line


def test_output_to_a_file_gets_plain_progress_lines_and_no_carriage_returns(logged_run):
    folder, console = logged_run
    raw = (folder / "console.txt").read_bytes()  # read_text would turn carriage returns into newlines
    assert b"\r" not in raw and b"it/s" not in raw  # no bar redrawn in place: not decoding, not training
    progress = [line for line in console.splitlines() if "train batch" in line]
    assert progress and all(re.search(r"epoch \d/2  train batch \d+/\d+  \( *\d+%\)  loss \d", p) for p in progress)
    assert any("test batch" in line for line in console.splitlines())
    assert (folder / "train.log").read_text().count("train batch") == len(progress)


def test_metrics_json_records_what_the_run_cost(logged_run):
    folder, _ = logged_run
    timing = json.loads((folder / "metrics.json").read_text())["timing"]
    assert len(timing["per_epoch"]["train_s"]) == len(timing["per_epoch"]["val_s"]) == 2
    assert all(s > 0 for s in timing["per_epoch"]["train_s"] + timing["per_epoch"]["val_s"])
    assert timing["epoch_s"] == pytest.approx(timing["train_epoch_s"] + timing["val_epoch_s"], abs=2e-3)
    assert timing["clips_per_s"] > 0 and timing["host_peak_mib"] > 100  # torch alone takes more
    assert 0 < 2 * timing["epoch_s"] <= timing["fit_s"] <= timing["wall_s"] and 0 < timing["test_s"] < timing["wall_s"]
    assert timing["cuda_peak_mib"] is None  # a CPU run


def test_library_warnings_reach_the_log_once_as_one_line(logged_run):
    folder, console = logged_run
    records = [line for line in (folder / "train.log").read_text().splitlines() if "[py.warnings]" in line]
    assert len(records) == len(set(r.split("] - ", 1)[1] for r in records))
    assert all(re.search(r"\] - \w+: .+ \([^)]+:\d+\)$", r) for r in records)
    assert [line for line in console.splitlines() if "Warning" in line and "[py.warnings]" not in line] == []


# -- a sweep ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logged_sweep(tmp_path_factory, cache_dir: Path, demo_root: Path) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("sweep")
    args = ["-m", *tiny_overrides(cache_dir), "trainer.max_epochs=1", "model.gru_hidden=16,32"]
    assert redirected([*args, f"hydra.sweep.dir={folder}"], folder.parent / "sweep-console.txt") == 0
    return folder, (folder.parent / "sweep-console.txt").read_text()


def test_a_sweep_says_which_job_runs_and_how_long_the_rest_takes(logged_sweep):
    folder, console = logged_sweep
    clock = r"\d+:\d\d:\d\d"
    expected = [
        r"sweep of 2 jobs started in ",
        r"job 1 of 2 started: model\.gru_hidden=16$",
        rf"job 1 of 2 finished in {clock} \(val/track_f1 \d\.\d{{4}}, \d+\.\d s per epoch\)$",
        rf"sweep: 1 of 2 jobs done in {clock}, about {clock} left$",
        r"job 2 of 2 started: model\.gru_hidden=32$",
        rf"job 2 of 2 finished in {clock} \(val/track_f1 \d\.\d{{4}}, \d+\.\d s per epoch\)$",
        rf"sweep: 2 of 2 jobs done in {clock}, about 0:00:00 left$",
    ]
    for text in (console, (folder / "sweep.log").read_text()):
        lines = [line for line in text.splitlines() if re.search(r"\bjob \d|sweep( of|:)", line)]
        assert len(lines) == len(expected), lines
        assert all(re.search(pattern, line) for pattern, line in zip(expected, lines)), lines
    # each job's own log has its lines too
    assert "job 2 of 2 started" in (folder / "1" / "train.log").read_text()


def test_the_report_shows_each_jobs_wall_time_and_seconds_per_epoch(logged_sweep, capsys):
    folder, _ = logged_sweep
    assert report_command([str(folder), "--per-job"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, _, *rows = lines[start:end]  # the first table: the paired comparisons follow it
    cells = [c.strip() for c in header.strip("|").split("|")]
    wall, epoch = cells.index("time.wall_s"), cells.index("time.epoch_s")
    for row in rows:
        values = [c.strip() for c in row.strip("|").split("|")]
        job = folder / ("0" if values[0] == "16" else "1")
        timing = json.loads((job / "metrics.json").read_text())["timing"]
        assert values[wall] == f"{timing['wall_s']:.1f}" and values[epoch] == f"{timing['epoch_s']:.1f}"


# -- the epoch line never computes a metric (DDP: a collective on rank 0 alone hangs) ----------------------
class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self.layer(batch[0]), batch[1]), sync_dist=True)
        self.log("val/track_acc", 0.5, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_epoch_line_only_reads_metrics_lightning_already_computed(monkeypatch, tmp_path, caplog):
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    inside, computed_inside, computed = [False], [], []
    compute = _ResultMetric.compute

    def spy_compute(self):
        (computed_inside if inside[0] else computed).append(self.meta.name)
        return compute(self)

    monkeypatch.setattr(_ResultMetric, "compute", spy_compute)

    def inside_hook(hook):
        def spy(self, *args, **kwargs):
            inside[0] = True
            try:
                return hook(self, *args, **kwargs)
            finally:
                inside[0] = False

        return spy

    for name in ("on_train_epoch_start", "on_train_epoch_end", "on_train_end"):
        monkeypatch.setattr(EpochLine, name, inside_hook(getattr(EpochLine, name)))

    data = TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,)))
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[Timings(), EpochLine(), PlainProgress(every_seconds=1e9)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.INFO, logger="metalcore.train"):
        trainer.fit(_Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    lines = [r.getMessage() for r in caplog.records if "train loss" in r.getMessage()]
    assert len(lines) == 2 and "val track acc 0.5000" in lines[-1]
    assert f"train loss {float(trainer.callback_metrics['train/loss_epoch']):.4f}" in lines[-1]
    assert "train/loss" in computed and computed_inside == []


def test_the_bar_is_chosen_from_the_console_and_can_be_forced(monkeypatch):
    from lightning.pytorch.callbacks import Callback, ProgressBar

    assert isinstance(progress_bar(5, interactive=False), PlainProgress)
    assert isinstance(progress_bar(5, interactive=True), ProgressBar)
    assert not isinstance(progress_bar(5, interactive=True), PlainProgress)
    assert type(progress_bar(5, enabled=False)) is Callback  # trainer.enable_progress_bar=false: none at all
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(5), PlainProgress)


# -- library warnings --------------------------------------------------------------------------------------
def test_library_deprecations_are_logged_once_and_metalcores_own_warnings_are_kept(monkeypatch, caplog):
    from metalcore.core.library_warnings import route_warnings_to_log

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.setattr(sys, "warnoptions", [])
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="py.warnings"):
        warnings.resetwarnings()
        route_warnings_to_log()
        try:
            for line in (10, 20, 30):  # one deprecation raised from three places of a library
                warnings.warn_explicit("`old_api` goes away in 3.0, use `new_api`", FutureWarning, "somelib/x.py", line)
            warnings.warn_explicit("Foo is deprecated", UserWarning, "somelib/y.py", 1, module="somelib.y")
            warnings.warn_explicit("Foo is deprecated", UserWarning, "somelib/y.py", 2, module="somelib.y")
            for line in (1, 2):  # metalcore's own: once per place, as Python does by default
                warnings.warn_explicit(
                    "a class has one track", UserWarning, "metalcore/data/split.py", line, module="metalcore.data.split"
                )
        finally:
            logging.captureWarnings(False)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "FutureWarning: `old_api` goes away in 3.0, use `new_api` (somelib/x.py:10)",
        "UserWarning: Foo is deprecated (somelib/y.py:1)",
        "UserWarning: a class has one track (metalcore/data/split.py:1)",
        "UserWarning: a class has one track (metalcore/data/split.py:2)",
    ]
