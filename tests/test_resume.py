"""Interruption and resume: last.ckpt is always the last epoch, SIGTERM and Ctrl-C save a resumable
checkpoint and exit non-zero, ``kill -9`` then ``ckpt_path=last`` ends like an uninterrupted run,
and a resume that cannot work is one line that leaves the earlier run as it was.

The callbacks are the ones ``conf/callbacks/default.yaml`` configures, driven by a tiny module so
that each test takes a second or two; the end-to-end ``kill -9`` of a real run is marked slow.
"""

from __future__ import annotations

import collections
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, read_metrics, run_module, tiny_overrides, train_config
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from metalcore.core.errors import UserError, command
from metalcore.training.resume import forget_after, resume_point

BATCHES = 8  # per epoch


class Tiny(L.LightningModule):
    """A linear model whose validation loss grows every epoch, so the best checkpoint stays at epoch 0;
    ``stop_at`` = (epoch, batch, signal) sends that signal to this process at that batch."""

    def __init__(self, stop_at: tuple[int, int, int] | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.stop_at = stop_at

    def training_step(self, batch, batch_idx):
        if self.stop_at and (self.current_epoch, batch_idx) == self.stop_at[:2]:
            os.kill(os.getpid(), self.stop_at[2])
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(BATCHES * 2, 4), torch.randint(0, 2, (BATCHES * 2,))), batch_size=2)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(4, 4), torch.randint(0, 2, (4,))), batch_size=2)


def configured_trainer(run_dir: Path, max_epochs: int) -> L.Trainer:
    """A Trainer with the checkpoint callbacks of conf/callbacks/default.yaml, writing into ``run_dir``."""
    cfg = train_config(f"paths.output_dir={run_dir}")
    callbacks = [instantiate(cfg.callbacks[name]) for name in ("model_checkpoint", "last_checkpoint")]
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        plugins=[instantiate(plugin) for plugin in cfg.trainer.plugins],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def saved(path: Path) -> tuple[int, int]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint["epoch"], checkpoint["global_step"]


def test_last_ckpt_is_always_the_last_epoch_not_the_best(tmp_path):
    """Lightning 2.6's save_last copies the best: after 4 epochs it was still epoch 0's."""
    trainer = configured_trainer(tmp_path, max_epochs=4)
    trainer.fit(Tiny())
    assert saved(tmp_path / "checkpoints" / "last.ckpt") == (3, 4 * BATCHES)
    assert Path(trainer.checkpoint_callback.best_model_path).name == "epoch000.ckpt"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_save_a_checkpoint_that_resumes_to_the_same_end(tmp_path, signum, caplog):
    from metalcore.training.stops import stopped_by_signal

    trainer = configured_trainer(tmp_path, max_epochs=3)
    with pytest.raises(SystemExit) as stop, command(), stopped_by_signal(trainer):
        trainer.fit(Tiny(stop_at=(1, 4, signum)))
    assert stop.value.code == 128 + signum  # 143 for SIGTERM, 130 for Ctrl-C
    epoch, step = saved(tmp_path / "checkpoints" / "last.ckpt")
    assert (epoch, step) == (1, BATCHES + 5)  # at the end of the batch the signal arrived in
    why = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert f"training stopped ({why}) in epoch 2/3 at step {step}; saved " in caplog.text  # as progress lines count
    assert "resume with python -m metalcore.train hydra.run.dir=<run folder> ckpt_path=last" in caplog.text

    resumed = configured_trainer(tmp_path, max_epochs=3)
    resumed.fit(Tiny(), ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert (resumed.current_epoch, resumed.global_step) == (3, 3 * BATCHES)  # as if never stopped


@pytest.fixture()
def small_disk(tmp_path, monkeypatch):
    """``(folder, fill)``: a 1 MiB tmpfs that ``fill()`` fills to the last byte, so every later write
    fails with ENOSPC. Where mounting is not allowed, files opened by ``metalcore.core.files`` stand
    in: after ``fill()`` each write stores half its bytes, then raises ENOSPC, as a full disk does."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode == 0:

        def fill() -> None:
            with open(folder / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError as err:
                    assert err.errno == errno.ENOSPC

        yield folder, fill
        subprocess.run(["umount", "-l", str(folder)], check=True)
        return
    from metalcore.core import files

    full = []

    class FullDisk(io.FileIO):
        def write(self, data) -> int:
            if not full:
                return super().write(data)
            super().write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)

    monkeypatch.setattr(files, "open", lambda path, mode: FullDisk(path, mode.replace("b", "")), raising=False)
    yield folder, lambda: full.append(True)


def test_a_full_disk_keeps_the_previous_checkpoints_whole_and_says_so(small_disk):
    """The disk fills in epoch 2: one line naming the intact checkpoints; last.ckpt is epoch 1's, not truncated."""
    from metalcore.training.checkpoint_io import stopped_when_full

    folder, fill = small_disk

    class FillsUp(Tiny):
        def training_step(self, batch, batch_idx):
            if (self.current_epoch, batch_idx) == (2, 0):
                fill()
            return super().training_step(batch, batch_idx)

    with pytest.raises(UserError) as stop, stopped_when_full(folder):
        configured_trainer(folder, max_epochs=4).fit(FillsUp())
    message = str(stop.value)
    assert "\n" not in message and message.startswith(f"{folder}: disk full (writing last.ckpt")
    assert f"last.ckpt (step {2 * BATCHES}), epoch000.ckpt (step {BATCHES})" in message
    assert "resume with python -m metalcore.train hydra.run.dir=<run folder> ckpt_path=last" in message
    assert saved(folder / "checkpoints" / "last.ckpt") == (1, 2 * BATCHES)
    assert saved(folder / "checkpoints" / "epoch000.ckpt") == (0, BATCHES)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch000.ckpt", "last.ckpt"]


def test_resume_point_refuses_what_cannot_be_resumed(tmp_path, trained_run):
    spec = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["spec"]
    model = {k: v for k, v in spec["model"].items() if k != "num_classes"}
    features = spec["features"]
    path, step = resume_point("last", trained_run / "checkpoints", model, features)
    assert path == trained_run / "checkpoints" / "last.ckpt" and step == saved(path)[1]
    assert resume_point(None, tmp_path, model, features) is None

    (tmp_path / "text.ckpt").write_text("hello")
    torch.save({101: "not lightning"}, tmp_path / "foreign.ckpt")
    refusals = {
        "last": r"ckpt_path=last: no last.ckpt in .*hydra.run.dir=",
        str(tmp_path / "nothing.ckpt"): r"nothing.ckpt: no such checkpoint file",
        str(tmp_path): r"is a folder; give a .ckpt file",
        str(tmp_path / "text.ckpt"): r"text.ckpt: not a checkpoint: PyTorch writes a zip archive and this file is "
        r"not one \(a text file, or the start of one cut off\)$",
        str(tmp_path / "foreign.ckpt"): r"foreign.ckpt: not a checkpoint of python -m metalcore.train",
    }
    for ckpt_path, message in refusals.items():
        with pytest.raises(UserError, match=message) as err:
            resume_point(ckpt_path, tmp_path / "checkpoints", model, features)
        assert "\n" not in str(err.value)
    other = {**model, "_target_": "metalcore.models.cnn.CNN"}
    with pytest.raises(UserError, match=r"model._target_=metalcore.models.crnn.CRNN there, .*cnn.CNN here"):
        resume_point("last", trained_run / "checkpoints", other, features)


def test_forget_after_drops_the_steps_a_resumed_run_writes_again(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path)
    for step in range(10):
        writer.add_scalar("train/loss", step, step)
    writer.close()
    assert forget_after(tmp_path, 6) == 4
    assert tensorboard_steps(tmp_path)["train/loss"] == list(range(6))


def tensorboard_steps(folder: Path) -> dict[str, list[int]]:
    """Every scalar tag's steps, in the order written, over all event files (duplicates kept)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = collections.defaultdict(list)
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name in ("", "scalars"):
                    steps[value.tag].append(event.step)
    return {tag: sorted(s) for tag, s in steps.items()}


def test_a_refused_resume_leaves_the_run_as_it_was(trained_run, cache_dir, tmp_path):
    """model=cnn on a crnn run: one line, and no file of the run changes (Hydra's record included)."""
    trained_run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file() and p.name != "train.log"}
    overrides = [o for o in tiny_overrides(cache_dir, f"hydra.run.dir={trained_run}") if "gru" not in o]
    result = run_module("metalcore.train", *overrides, "ckpt_path=last", "model=cnn")
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    assert len([line for line in output.splitlines() if "trained with other settings" in line]) == 1, output
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before
    added = [p for p in trained_run.rglob("*") if p.is_file() and p not in before]
    assert all(p.name == "train.log" or ".hydra/resume-" in str(p) for p in added), added  # its own record only


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_ends_like_an_uninterrupted_run(trained_run, cache_dir, tmp_path):
    """The README's resume command after a kill -9 in epoch 2: same epochs, no TensorBoard step twice."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(cache_dir, f"hydra.run.dir={run_dir}")
    process = subprocess.Popen(
        [sys.executable, "-m", "metalcore.train", *overrides],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and saved(last)[0] >= 1:  # epochs 0 and 1 done: now in epoch 2
            process.kill()
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed in epoch 2"
    assert not (run_dir / "metrics.json").exists()

    result = run_module("metalcore.train", *overrides, "ckpt_path=last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(run_dir)["epochs"] == read_metrics(trained_run)["epochs"]
    assert saved(last) == saved(trained_run / "checkpoints" / "last.ckpt")
    ours, reference = tensorboard_steps(run_dir / "tensorboard"), tensorboard_steps(trained_run / "tensorboard")
    assert {t: s for t, s in ours.items() if t != "epoch"} == {t: s for t, s in reference.items() if t != "epoch"}
    assert (run_dir / ".hydra" / "overrides.yaml").is_file() and list((run_dir / ".hydra").glob("resume-*"))
