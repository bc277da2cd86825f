"""Shared fixtures: one tiny synthetic library and one trained run per test session.

Everything runs on the CPU in a few seconds per training: short tracks, short segments, few
epochs. The overrides are the same ones a user would type, so the tests exercise the commands the
README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from omegaconf import DictConfig

from metalcore.data.demo import DemoSet
from metalcore.uncertainty.calibration import store_temperature

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: one core per worker, for its commands too
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
# every score metrics.json holds per clip and per track (and evaluate writes)
METRICS = {
    "acc",
    "precision",
    "recall",
    "f1",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "auroc",
    "pr_auc",
}
TINY_DEMO = DemoSet(tracks_per_class=8, seconds=8.0, seed=0, sample_rate=22050)


def train_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as the command line would (every test's one way to
    compose); ``hydra``: with the ``hydra`` node too (sweepers, launchers)."""
    from hydra import compose, initialize_config_dir

    import metalcore.training.config  # noqa: F401  (registers the resolvers the configs use)

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def tiny_overrides(cache_dir: Path, *extra: str) -> list[str]:
    """``data=synthetic`` shrunk to a CPU-sized problem (about ten seconds of training)."""
    return [
        "data=synthetic",
        f"paths.cache_dir={cache_dir}",
        f"data.demo.tracks_per_class={TINY_DEMO.tracks_per_class}",
        f"data.demo.seconds={TINY_DEMO.seconds}",
        f"data.demo.sample_rate={TINY_DEMO.sample_rate}",
        "data.sample_rate=16000",
        "data.segment_seconds=2.0",
        "data.segments_per_track=6",
        "data.batch_size=6",  # as with the defaults (60 clips, batches of 16): a held-out batch of one track
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.num_workers=0",
        "data.workers_for_decoding=1",
        "features.n_fft=512",
        "features.hop_length=256",
        "model.gru_hidden=32",
        "trainer=cpu",
        "trainer.max_epochs=4",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        *extra,
    ]


def run_module(
    module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m <module> args...`` as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None] | None = None) -> Path:
    """A session fixture's folder, made by ``make`` once per test run: with ``pytest -n`` the first worker
    that asks makes it and the others wait for it and share it, as they share the cache."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(f"{folder}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            if make is not None:
                make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A decoded-audio cache shared by every test, as sweeps share one on a real machine."""
    return made_once(tmp_path_factory, "cache")


@pytest.fixture(scope="session")
def demo_root(cache_dir: Path) -> Path:
    """The tiny synthetic library, at the folder ``data=synthetic`` with ``tiny_overrides`` uses."""
    d = TINY_DEMO
    return d.ensure(cache_dir / f"demo-{d.tracks_per_class}x{d.seconds}s-{d.sample_rate}hz-seed{d.seed}")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir: Path, demo_root: Path) -> Path:
    """One real ``python -m metalcore.train`` on the tiny set; its run folder."""

    def train(run_dir: Path) -> None:
        result = run_module("metalcore.train", *tiny_overrides(cache_dir, f"hydra.run.dir={run_dir}"))
        assert result.returncode == 0, result.stderr[-3000:]

    return made_once(tmp_path_factory, "trained", train)


def redirected(args: list[str], log: Path, cwd: Path = REPO) -> int:
    """``python -m metalcore.train ARGS > log 2>&1``, as a batch job runs it; warnings at Python's defaults."""
    with open(log, "w") as out:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
        return subprocess.run(
            [sys.executable, "-m", "metalcore.train", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env
        ).returncode


@pytest.fixture(scope="session")
def logged_run(tmp_path_factory, cache_dir: Path, demo_root: Path) -> tuple[Path, str]:
    """Two epochs with output to a file and progress lines as often as possible; the run folder and
    what the console got.

    Its checkpoint callback keeps the epoch with the *highest* validation loss (the first: the second
    learns), so the checkpoint it tests, calibrates and exports is not its last epoch, as in a real run
    that overfits; the session's ``trained_run`` keeps improving to its end.
    """

    def train(folder: Path) -> None:
        overrides = [o for o in tiny_overrides(cache_dir) if not o.startswith("trainer.enable_progress_bar")]
        args = [
            *overrides,
            "trainer.max_epochs=2",
            "callbacks.progress_bar.every_seconds=0",
            "callbacks.model_checkpoint.mode=max",
            f"hydra.run.dir={folder}",
        ]
        assert redirected(args, folder / "console.txt") == 0, (folder / "console.txt").read_text()[-3000:]

    folder = made_once(tmp_path_factory, "logged", train)
    return folder, (folder / "console.txt").read_text()


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def musicnn_cache(cache_dir) -> Path:
    """``cache_dir`` with musicnn's four backbones fetched, verified and converted once per session
    (``pip download`` from the configured index, as on a user's first run)."""
    from metalcore.models.musicnn import BACKBONES, load_musicnn

    with FileLock(f"{cache_dir}.musicnn.lock"):  # pytest -n: one worker fetches, the others read
        for backbone in BACKBONES:
            load_musicnn(backbone, cache_dir)
    return cache_dir


CALIBRATED_TEMPERATURE = 2.0


@pytest.fixture(scope="session")
def calibrated_checkpoint(trained_run: Path, tmp_path_factory) -> Path:
    """The trained run's best checkpoint with a stored temperature of 2, in a run folder of its own.

    The tiny run fits no temperature (every validation track is right by a margin, so T = 1), which
    hides any mistake in how predict, evaluate and export apply one; at T = 2 the calibrated
    probabilities differ from the network's own. The run's ``split.csv`` comes along for evaluate.
    """
    run = tmp_path_factory.mktemp("calibrated")
    (run / "checkpoints").mkdir()
    best = Path(read_metrics(trained_run)["best_checkpoint"])
    copy = run / "checkpoints" / best.name
    shutil.copy(best, copy)
    shutil.copy(trained_run / "split.csv", run / "split.csv")
    calibration = read_metrics(trained_run)["calibration"]
    store_temperature(copy, {**calibration, "temperature": CALIBRATED_TEMPERATURE})
    return copy


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Captured output keeps file names that are not UTF-8 (the tests of such names print them) as
    escapes, so that a parallel worker (pytest -n) can send its report back."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode()) for title, text in report.sections]
