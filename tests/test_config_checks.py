"""Every config value a run cannot use is refused before any work, in one line naming the key and
the valid range: not after an epoch, not as a traceback from PyTorch or Lightning."""

from __future__ import annotations

import copy

import pytest
from conftest import train_config
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from metalcore.core.errors import UserError
from metalcore.training.checks import check_config
from metalcore.training.config import CONF

# override -> what the line must say (a regular expression)
BAD = {
    "data.num_workers=-1": r"^data.num_workers=-1 must be 0 or more \(0 loads in the training process\)$",
    "data.workers_for_decoding=-2": r"^data.workers_for_decoding=-2 must be 0 or more \(0 starts one per core\)$",
    "module.optimizer.lr=-1": r"^module.optimizer.lr=-1.0 must be a positive finite number \(1e-3 is usual\)$",
    "module.optimizer.lr=nan": r"^module.optimizer.lr=nan must be a positive finite number",
    "module.optimizer.weight_decay=-0.1": r"^module.optimizer.weight_decay=-0.1 must be 0 or more$",
    "module.scheduler.T_max=0": r"^module.scheduler.T_max=0 must be 1 or more \(epochs in one cosine half-period\)$",
    "augment.spectrogram.specaugment.freq_mask=65": r"^augment.spectrogram.specaugment.freq_mask=65 is wider than "
    r"the 64 Mel bands \(features.n_mels\); use 0 to 64",
    "callbacks.model_checkpoint.monitor=val/acuracy": r"^callbacks.model_checkpoint.monitor=val/acuracy is not a "
    r"metric a run logs at validation; use one of: val/loss, val/acc, .*val/track_f1, ",
    "callbacks.model_checkpoint.mode=sideways": r"^callbacks.model_checkpoint.mode=sideways must be min or max$",
    "trainer.max_epochs=0": r"^trainer.max_epochs=0 trains nothing",
    "optimized_metric=val/f2": r"^optimized_metric=val/f2 is not a metric a run logs",
}


@pytest.fixture(scope="module")
def default() -> DictConfig:
    return train_config()


@pytest.mark.parametrize("override", BAD)
def test_a_value_a_run_cannot_use_is_one_line_with_the_valid_range(default, override):
    cfg = copy.deepcopy(default)  # one composition for all: Hydra's would take a second each
    parsed = OverridesParser.create().parse_override(override)
    OmegaConf.update(cfg, parsed.key_or_group, parsed.value())
    with pytest.raises(UserError, match=BAD[override]):
        check_config(cfg)


@pytest.mark.parametrize("experiment", [None, *sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))])
def test_the_default_config_and_every_experiment_pass(experiment):
    check_config(train_config(*([f"experiment={experiment}"] if experiment else [])))


def test_a_monitor_given_with_its_direction_passes():
    check_config(train_config("callbacks.model_checkpoint.monitor=val/track_f1", "callbacks.model_checkpoint.mode=max"))


@pytest.mark.parametrize(
    ("monitor", "mode", "message"),
    [("val/acuracy", "min", "monitor=val/acuracy is not a metric a run"), ("val/loss", "sideways", "mode=sideways")],
)
def test_the_best_checkpoint_checks_its_monitor_as_it_is_made(tmp_path, monitor, mode, message):
    """Made directly (a user's own config, a notebook), not only through check_config."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from metalcore.training.config import make

    node = train_config(f"paths.output_dir={tmp_path}").callbacks.model_checkpoint
    made = make(node)
    assert made.monitor == "val/loss"
    plain = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min")  # what runs saved before it
    assert made.state_key == plain.state_key  # so that their resume restores the best epoch so far
    with pytest.raises(UserError, match=f"^callbacks.model_checkpoint.{message}"):
        make(node, monitor=monitor, mode=mode)


def test_without_a_logger_the_learning_rate_callback_stays_silent(tmp_path):
    """Lightning's LearningRateMonitor refuses to start without one; logger=null runs keep the callback."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.loggers import CSVLogger

    node = train_config().callbacks.lr_monitor
    for logger in (False, CSVLogger(tmp_path)):
        trainer = L.Trainer(
            max_epochs=2, limit_train_batches=2, limit_val_batches=1, callbacks=[instantiate(node)],
            logger=logger, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(BoringModel())
    header, *epochs = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "lr-SGD" in header.split(",") and len(epochs) == 2, (header, epochs)  # one learning rate per epoch


def test_a_hop_of_zero_samples_is_refused_not_taken_as_half_the_window():
    """``hop_length=0`` trained with n_fft / 2 while config.yaml recorded 0."""
    from metalcore.models.frontend import MelFrontend

    with pytest.raises(UserError, match=r"^features.hop_length=0 must be 1 sample or more"):
        MelFrontend(sample_rate=16000, n_fft=512, hop_length=0)
    assert MelFrontend(sample_rate=16000, n_fft=512).hop_length == 256  # left out (null): half the window


@pytest.mark.parametrize("rate", [999, 999999999])
def test_a_sample_rate_audio_does_not_use_is_named_as_the_cause(tmp_path, rate):
    """Not blamed on "empty Mel filters" by the front-end built next."""
    from metalcore.data.datamodule import MusicDataModule

    with pytest.raises(UserError, match=rf"^data.sample_rate={rate} must be from 1000 to 768000 Hz"):
        MusicDataModule(str(tmp_path), str(tmp_path / "cache"), sample_rate=rate)


def test_a_segment_index_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path):
    """``data.segments_per_track=100000000`` grew past 14.7 GB with nothing printed."""
    from metalcore.data.datamodule import MusicDataModule

    for label in ("metal", "hardcore"):
        (tmp_path / "lib" / label).mkdir(parents=True)
        (tmp_path / "lib" / label / "a.wav").write_bytes(b"not decoded: refused before")
    data = MusicDataModule(str(tmp_path / "lib"), str(tmp_path / "cache"), segments_per_track=100_000_000)
    with pytest.raises(
        UserError,
        match=r"^data.segments_per_track=100000000: 2 tracks x 100000000 windows need "
        r"about 37 GiB for the segment index, more than half of the .* GiB of memory available; "
        r"use at most \d+",
    ):
        data.prepare(progress=False)
    assert not list((tmp_path / "cache").rglob("*.pcm")) and not (tmp_path / "cache" / "skipped.csv").exists()
