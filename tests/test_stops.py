"""A stop anywhere, then ``ckpt_path=last``, ends as the uninterrupted run ends.

The LightningModule is metalcore's own ``GenreClassifier`` (training metrics computed at each epoch's
end, validation pooled per track) with a network small enough to train in a fraction of a second,
driven by the callbacks of ``conf/callbacks/default.yaml`` and the trainer plugins of
``conf/trainer/default.yaml``. A stop signal is sent to this process at a chosen point: in a
training batch, in validation, in the sanity check, in the test, in the setup before any epoch; the
run is then resumed from ``last.ckpt`` and compared with a run that was never stopped: the same
epochs and steps, every epoch validated once with the same scores, the same best checkpoint,
positive timings.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import train_config
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from metalcore.core.errors import Terminated
from metalcore.data.resumable import MidEpochResume
from metalcore.models.cnn import CNN
from metalcore.models.frontend import MelFrontend
from metalcore.training.callbacks.timings import Timings
from metalcore.training.module import GenreClassifier
from metalcore.training.stops import stopped_by_signal

SAMPLES, TRAIN_BATCHES, VAL_BATCHES, BATCH = 2048, 6, 4, 4
CALLBACKS = ("model_checkpoint", "last_checkpoint", "timings", "epoch_line")


class Clips(Dataset):
    """Fixed noise clips whose label is their loudness; each clip is its own track in validation."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        self.audio = torch.randn(n, 1, SAMPLES, generator=g) * (0.05 + 0.3 * self.labels[:, None, None])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.audio[i], self.labels[i], i


class Data(MidEpochResume):
    """Training batches in a fixed order, which a resumed epoch continues (as ``MusicDataModule``'s do)."""

    def train_dataloader(self):
        clips = Clips(TRAIN_BATCHES * BATCH, 0)
        return DataLoader(clips, batch_size=BATCH, sampler=self.resumable(SequentialSampler(clips), BATCH))

    def val_dataloader(self):
        return DataLoader(Clips(VAL_BATCHES * BATCH, 1), batch_size=BATCH)

    def test_dataloader(self):
        return self.val_dataloader()


class Stop(L.Callback):
    """Sends ``signum`` to this process at a hook's ``(epoch, batch)``: the signal arrives mid-batch."""

    def __init__(self, hook: str, epoch: int, batch: int, signum: int) -> None:
        self.hook, self.at, self.signum = hook, (epoch, batch), signum

    def _maybe(self, trainer: L.Trainer, hook: str, batch_idx: int) -> None:
        if hook == self.hook and (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), self.signum)

    def setup(self, trainer, pl_module, stage):  # beside the DataModule's setup, before Lightning's handlers
        self._maybe(trainer, stage, 0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe(trainer, "sanity" if trainer.sanity_checking else "validation", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe(trainer, "test", batch_idx)


class ValidationLog(L.Callback):
    """Every epoch's validation loss, as often as the epoch was validated."""

    def __init__(self) -> None:
        self.scores: list[tuple[int, float]] = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.scores.append((trainer.current_epoch, float(trainer.callback_metrics["val/loss"])))


def module() -> GenreClassifier:
    torch.manual_seed(0)
    return GenreClassifier(
        frontend=MelFrontend(sample_rate=8000, n_mels=8, n_fft=128, hop_length=64),
        net=CNN(num_classes=2, in_channels=1, n_mels=8, channels=(4,), conv_dropout=0.0, dropout=0.0),
        classes=["quiet", "loud"],
        optimizer=functools.partial(torch.optim.SGD, lr=0.05),
        channels_last=False,
    )


def trainer(run_dir: Path, *extra: L.Callback, epochs: int = 3) -> L.Trainer:
    cfg = train_config(f"paths.output_dir={run_dir}")
    return L.Trainer(
        max_epochs=epochs,
        callbacks=[*(instantiate(cfg.callbacks[name]) for name in CALLBACKS), *extra],
        plugins=[instantiate(plugin) for plugin in cfg.trainer.plugins],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        accelerator="cpu",
        deterministic=True,
    )


def fit_and_test(run_dir: Path, *extra: L.Callback, ckpt_path: Path | None = None) -> L.Trainer:
    """What ``metalcore.training.experiment.train`` does with a trainer: fit, then test the best."""
    t = trainer(run_dir, *extra)
    with stopped_by_signal(t):
        t.fit(module(), datamodule=Data(), ckpt_path=ckpt_path)
        t.test(module(), datamodule=Data(), ckpt_path=t.checkpoint_callback.best_model_path, verbose=False)
    return t


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[L.Trainer, ValidationLog]:
    log = ValidationLog()
    return fit_and_test(tmp_path_factory.mktemp("reference"), log), log


@pytest.mark.parametrize(
    ("hook", "epoch", "batch", "signum"),
    [
        pytest.param("validation", 1, 2, signal.SIGTERM, id="validation-SIGTERM"),
        pytest.param("validation", 1, 2, signal.SIGINT, id="validation-Ctrl-C", marks=pytest.mark.slow),
        pytest.param("train", 1, 3, signal.SIGINT, id="mid-epoch-Ctrl-C"),
        pytest.param("train", 2, 0, signal.SIGTERM, id="epoch-start-SIGTERM", marks=pytest.mark.slow),
        pytest.param("sanity", 0, 0, signal.SIGTERM, id="sanity"),
        pytest.param("test", 3, 1, signal.SIGTERM, id="test"),
        pytest.param("fit", 0, 0, signal.SIGTERM, id="setup"),
    ],
)
def test_a_stop_anywhere_resumes_to_the_uninterrupted_end(tmp_path, reference, caplog, hook, epoch, batch, signum):
    log = ValidationLog()
    with pytest.raises(Terminated) as stop:
        fit_and_test(tmp_path, Stop(hook, epoch, batch, signum), log)
    assert stop.value.status == 128 + signum
    why = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    if hook != "sanity":
        assert f"stopped ({why})" in caplog.text
    if hook == "fit":  # at once: a SIGTERM in a long setup was forgotten and the run trained to its end
        assert not log.scores and "before its first checkpoint" in caplog.text, log.scores

    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed = fit_and_test(tmp_path, log, ckpt_path=last if last.is_file() else None)  # a fresh run: again
    ref, ref_log = reference
    assert (resumed.current_epoch, resumed.global_step) == (ref.current_epoch, ref.global_step)
    # every epoch validated once, with the scores of the run that was never stopped
    done = [e for e, _ in log.scores]
    assert sorted(set(done)) == done == [e for e, _ in ref_log.scores], log.scores
    assert [round(s, 5) for _, s in log.scores] == [round(s, 5) for _, s in ref_log.scores]
    assert Path(resumed.checkpoint_callback.best_model_path).name == Path(ref.checkpoint_callback.best_model_path).name
    assert resumed.checkpoint_callback.best_model_score == pytest.approx(ref.checkpoint_callback.best_model_score)
    last, reference_last = (
        torch.load(r, weights_only=True)["state_dict"]
        for r in (tmp_path / "checkpoints" / "last.ckpt", Path(ref.checkpoint_callback.dirpath) / "last.ckpt")
    )
    assert all(torch.allclose(last[k], reference_last[k], atol=1e-6) for k in reference_last if "net" in k)
    timings = next(c for c in resumed.callbacks if isinstance(c, Timings)).summary()
    assert all(s > 0 for s in timings["per_epoch"]["train_s"]), timings
    if hook != "test":  # a stop in the test leaves no epoch to train
        assert timings["epoch_s"] > 0 and timings["train_epoch_s"] > 0 and timings["clips_per_s"] > 0, timings


def test_a_resumed_epoch_is_timed_in_part_and_left_out_of_the_means(tmp_path, caplog):
    """Ctrl-C in epoch 2: the resumed epoch's clock starts at the resume (its time was negative: minus its
    validation), it is shown without a time, and the means, clips/s and the ETA come from whole epochs."""
    caplog.set_level(logging.INFO, logger="metalcore.train")
    with pytest.raises(Terminated):
        fit_and_test(tmp_path, Stop("train", 1, 3, signal.SIGINT))
    caplog.clear()
    resumed = fit_and_test(tmp_path, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    clock = next(c for c in resumed.callbacks if isinstance(c, Timings))
    assert [e.epoch for e in clock.epochs] == [1, 2] and all(e.train_s > 0 for e in clock.epochs)
    assert clock.epochs[0].clips == (TRAIN_BATCHES - 4) * BATCH  # the batches after the stop, once each
    assert [e.resumed for e in clock.epochs] == [True, False]
    summary = clock.summary()
    assert summary["per_epoch"]["resumed"] == [1]
    assert summary["epoch_s"] == pytest.approx(clock.epochs[1].seconds, abs=1e-3)  # the whole epoch only
    clips = sum(e.clips for e in clock.epochs) / sum(e.train_s for e in clock.epochs)
    assert summary["clips_per_s"] == pytest.approx(clips, rel=1e-2, abs=0.05)  # recorded to 0.1
    lines = {int(m[1]): m[0] for m in re.finditer(r"epoch (\d)/3 .*$", caplog.text, re.M)}
    assert "time      - s" in lines[2] and "ETA -" in lines[2], lines[2]  # nothing known yet but a partial epoch
    assert re.search(r"time +\d+\.\d s +\d+\.\d clips/s  ETA 0:00:00$", lines[3]), lines[3]


def test_a_stop_in_the_setup_of_a_resumed_run_keeps_its_checkpoint_as_it_was(tmp_path, caplog):
    """Before the checkpoint is restored the model is untrained: nothing of it may replace last.ckpt."""
    with pytest.raises(Terminated):
        fit_and_test(tmp_path, Stop("train", 1, 3, signal.SIGTERM))
    last = tmp_path / "checkpoints" / "last.ckpt"
    kept = last.read_bytes()
    with pytest.raises(Terminated) as stop:
        fit_and_test(tmp_path, Stop("fit", 0, 0, signal.SIGTERM), ckpt_path=last)
    assert stop.value.status == 143
    assert last.read_bytes() == kept
    assert f"training stopped (SIGTERM) outside its epochs; {last} (step 10) is as it was" in caplog.text
