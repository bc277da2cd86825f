"""``python -m metalcore.train``: what one real run on the tiny set leaves behind, and how it refuses.

The run is the session's ``trained_run`` (``data=synthetic`` shrunk by ``tiny_overrides``). One
refusal per way an error can reach the user is a real run too (two at a time: each spends most of
its few seconds importing); the other impossible settings go through the same ``build`` in-process.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import METRICS, REPO, read_metrics, run_module, tiny_overrides, train_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from metalcore.audio.pcm import to_float
from metalcore.core.errors import UserError
from metalcore.data.datamodule import MusicDataModule
from metalcore.inference.checkpoint import Classifier
from metalcore.scoring.pooling import pool_tracks
from metalcore.training.experiment import build, optimized_value, run
from metalcore.uncertainty.calibration import track_nll

SPLITS = ("train", "val", "test")
PER_TRACK = 6  # data.segments_per_track in tiny_overrides


def read_split(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- what a run writes ----------------------------------------------------------------------------


def test_metrics_json_holds_clip_and_track_scores_and_counts(trained_run):
    metrics = read_metrics(trained_run)
    assert metrics["classes"] == ["hardcore", "metal"] and metrics["seed"] == 0
    rows = read_split(trained_run)
    tracks = Counter(row["split"] for row in rows)
    assert metrics["counts"] == {s: {"tracks": tracks[s], "clips": tracks[s] * PER_TRACK} for s in SPLITS}
    for level, total in (("clip", tracks["test"] * PER_TRACK), ("track", tracks["test"])):
        scores = metrics["test"][level]
        assert set(scores) >= METRICS, level
        assert all(0 <= scores[name] <= 1 for name in METRICS), scores
        confusion = scores["confusion"]
        assert len(confusion) == len(confusion[0]) == 2 and sum(map(sum, confusion)) == total
        assert sum(confusion[i][i] for i in range(2)) / total == pytest.approx(scores["acc"])
    assert metrics["monitor"]["metric"] == "val/loss"


def test_a_run_scores_well_above_chance(trained_run):
    test = read_metrics(trained_run)["test"]
    assert test["track"]["acc"] >= 0.75, test["track"]  # 4 test tracks: at most one wrong (it gets 1.0)
    assert test["clip"]["acc"] >= 0.7 and test["track"]["auroc"] >= 0.75, test


def test_split_csv_puts_each_track_in_exactly_one_split(trained_run, demo_root):
    rows = read_split(trained_run)
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) and {Path(p) for p in paths} == {
        p.resolve() for p in demo_root.rglob("*") if p.suffix in (".wav", ".flac")
    }
    assert {(row["split"], row["class"]) for row in rows} == {(s, c) for s in SPLITS for c in ("hardcore", "metal")}


def test_same_seed_gives_the_same_split(trained_run, demo_root, cache_dir, tmp_path):
    """The run's split.csv is what the same data settings and seed give anywhere else."""
    dm = MusicDataModule(
        root=str(demo_root),
        cache_dir=str(cache_dir),
        sample_rate=16000,
        segment_seconds=2.0,
        segments_per_track=PER_TRACK,
        val_fraction=0.25,
        test_fraction=0.25,
        num_workers=0,
        seed=0,
        output_dir=str(tmp_path),
        workers_for_decoding=1,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert read_split(tmp_path) == read_split(trained_run)


SEEDED = [
    *(f"data={p.stem}" for p in sorted((REPO / "conf" / "data").glob("*.yaml"))),
    *(f"augment={p.stem}" for p in sorted((REPO / "conf" / "augment").glob("*.yaml"))),
    *(f"experiment={p.stem}" for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))),
]


@pytest.mark.parametrize("choice", SEEDED)
def test_seed_on_the_command_line_reaches_the_split_and_the_augmentation(choice, tmp_path):
    """``-m seed=1,2,3`` must give three splits and three sets of draws: no group pins its own seed."""
    cfg = train_config(choice, "seed=7", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}")
    datamodule = instantiate(cfg.data)
    assert (cfg.data.seed, datamodule.seed) == (7, 7), choice
    assert (cfg.augment.seed, instantiate(cfg.augment).seed) == (7, 7), choice
    assert cfg.module.bootstrap_seed == cfg.callbacks.run_record.seed == 7  # the bootstrap's draws, recorded


def test_checkpoints_hold_the_best_and_the_last(trained_run):
    metrics = read_metrics(trained_run)
    names = {p.name for p in (trained_run / "checkpoints").iterdir()}
    best = Path(metrics["best_checkpoint"])
    assert "last.ckpt" in names and best.parent == trained_run / "checkpoints" and best.name in names - {"last.ckpt"}
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["classes"] == metrics["classes"]
    assert any(k.startswith("net.gru.") for k in checkpoint["state_dict"])


@pytest.fixture(scope="module")
def events(trained_run) -> EventAccumulator:
    """The trained run's TensorBoard events, every value kept."""
    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_holds_scalars_hparams_images_and_figures(trained_run, events):
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {"val/loss", "val/track_f1", "test/acc", "test/track_acc"} <= scalars
    assert any(tag.startswith("train/loss") for tag in scalars)
    assert {"train/acc", "train/f1", "train/f1_weighted", "train/auroc"} <= set(scalars)  # the training collection
    assert len(events.Scalars("val/loss")) >= 4  # one per epoch

    track_acc = read_metrics(trained_run)["test"]["track"]["acc"]
    assert events.Scalars("test/track_acc")[-1].value == pytest.approx(track_acc)
    assert events.Scalars("hparams/test_track_acc")[-1].value == pytest.approx(track_acc)
    hparams = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in events.PluginTagToContent("hparams").items()
    }
    experiment = hparams["_hparams_/experiment"].experiment
    assert "hparams/test_track_acc" in {info.name.tag for info in experiment.metric_infos}
    session = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert session["model.gru_hidden"].number_value == 32 and session["data.segment_seconds"].number_value == 2.0

    assert {"test/confusion_clip", "test/confusion_track"} <= images
    spectrograms = [tag for tag in images if tag.startswith("mel/")]
    assert 1 <= len(spectrograms) <= 4
    assert {tag.split("/")[1].rsplit("_", 1)[0] for tag in spectrograms} == {"hardcore", "metal"}  # both classes
    image = events.Images(spectrograms[0])[0]
    assert image.height == 64 and image.width == 2 * 16000 // 256 + 1  # n_mels x frames of one segment


def test_the_learning_rate_follows_the_cosine_schedule_one_step_per_epoch(trained_run, events):
    """module.scheduler: lr 1e-3 annealed to 0 over trainer.max_epochs (4) epochs, constant within each:
    the value logged at the start of epoch e is 1e-3 * (1 + cos(pi * e / 4)) / 2."""
    logged = events.Scalars("lr-AdamW")
    steps_per_epoch = len(read_split(trained_run)) // 2 * PER_TRACK // 6  # train tracks x clips / batch of 6
    assert [s.step for s in logged] == [e * steps_per_epoch for e in range(4)]
    expected = [1e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [s.value for s in logged] == pytest.approx(expected, rel=1e-5)


def test_hydra_records_the_overrides(trained_run, cache_dir):
    config = OmegaConf.load(trained_run / ".hydra" / "config.yaml")
    assert config.model.gru_hidden == 32 and config.features.n_fft == 512 and config.data.segment_seconds == 2.0
    assert config.trainer.max_epochs == 4 and config.paths.cache_dir == str(cache_dir)
    assert list(OmegaConf.load(trained_run / ".hydra" / "overrides.yaml")) == tiny_overrides(cache_dir)


# -- refusals -------------------------------------------------------------------------------------
# The command itself refuses, once per way an error reaches the user: the catalogue (an empty data
# folder, what a new user meets first), Hydra's own check of keys, and a split error raised inside
# Trainer.fit (grouped by artist: the tiny set has two bands per class). {tiny} stands for
# tiny_overrides; {fresh} is an empty cache folder that must stay empty.
REFUSALS = {
    "empty data folder": (
        ["data.root={empty}", "paths.cache_dir={fresh}"],
        ["data.root={empty}", "no audio files", "data_music/metal/", "data=synthetic"],
    ),
    "unknown key": (["{tiny}", "data.nonsense=1"], ["Could not override 'data.nonsense'"]),
    "a split without a class": (
        ["{tiny}", "data.split.group_by=artist"],
        ["_fraction=0.25 leaves the", "grouped by artist"],
    ),
}


@pytest.fixture(scope="module")
def refusals(trained_run, cache_dir, demo_root, tmp_path_factory) -> dict:
    """Every refusal, two at a time (each spends most of its time importing), after the trained run."""
    root = tmp_path_factory.mktemp("refusals")
    (root / "empty" / "metal").mkdir(parents=True)
    (root / "empty" / "metal" / ".DS_Store").write_bytes(b"")  # a folder with no track in it

    def run(name: str) -> tuple:
        overrides, expected = REFUSALS[name]
        run_dir = root / name.replace(" ", "-")
        fill = {"empty": root / "empty", "demo": demo_root, "fresh": run_dir / "fresh-cache"}
        args = [
            part for o in overrides for part in (tiny_overrides(cache_dir) if o == "{tiny}" else [o.format(**fill)])
        ]
        result = run_module("metalcore.train", *args, f"hydra.run.dir={run_dir}", timeout=120)
        return result, run_dir, [e.format(**fill) for e in expected]

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(REFUSALS, pool.map(run, REFUSALS)))


@pytest.mark.parametrize("name", REFUSALS)
def test_refusal_is_one_clear_message_before_training(refusals, name):
    result, run_dir, expected = refusals[name]
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if all(e in line for e in expected)]
    assert len(lines) == 1, output[-3000:]  # the whole reason, on one line
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()
    assert not list((run_dir / "fresh-cache").rglob("*.pcm")), "decoded the library for a config that cannot train"


# Every other impossible setting goes through the same build() in-process (a Python start-up costs
# seconds); main() turns any UserError into the one line checked above. None of them may decode the
# library first, except the model's own check, which needs the number of classes.
CONFIG_ERRORS = {
    "missing data folder": (
        ["data.root={missing}", "data.demo=null"],
        r"data\.root=.*missing: folder does not exist; .*data=synthetic",
    ),
    "n_fft longer than a segment": (
        ["features.n_fft=65536"],
        r"features\.n_fft=65536 is longer than a segment of 32000 samples",
    ),
    "too many Mel bins": (["features.n_mels=256"], r"features\.n_mels=256 is too many for features\.n_fft=512"),
    "no tracks left to train on": (["data.test_fraction=0.8"], r"data\.test_fraction=0\.8 leave nothing to train on"),
    "unknown argument": (["+model.nonsense=1"], r"model \(metalcore\..*unexpected keyword argument 'nonsense'"),
    "a model that cannot take the segment": (
        ["model.channels=[8,8,8,8,8,8,8,8]", "features.n_mels=256", "features.n_fft=4096"],
        r"data\.segment_seconds=2\.0",
    ),
}
AFTER_DECODING = {"unknown argument", "a model that cannot take the segment"}


@pytest.mark.parametrize("name", CONFIG_ERRORS)
def test_impossible_config_is_refused_by_build(name, cache_dir, demo_root, tmp_path):
    overrides, message = CONFIG_ERRORS[name]
    decodes = name in AFTER_DECODING  # these use the shared cache, full since the trained run
    fresh = cache_dir if decodes else tmp_path / "fresh-cache"
    cfg = train_config(
        *tiny_overrides(fresh),
        f"data.root={demo_root}",
        f"paths.output_dir={tmp_path / 'run'}",
        *(o.format(missing=tmp_path / "missing") for o in overrides),
    )
    with pytest.raises(UserError, match=message) as err:
        build(cfg)
    assert "\n" not in str(err.value)
    if not decodes:
        assert not list(fresh.rglob("*.pcm")), "decoded the library for a config that cannot train"
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def logged_datamodule(logged_run) -> MusicDataModule:
    """The logged run's DataModule rebuilt from its config.yaml: the same split and clips."""
    folder, _ = logged_run
    datamodule = instantiate(OmegaConf.load(folder / "config.yaml").data, output_dir=None)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def clips_of(checkpoint: Path, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checkpoint's own probabilities (no temperature) on every clip ``loader`` serves, in
    evaluation mode, with their labels and track ids: what the run's held-out steps saw."""
    network = Classifier.from_checkpoint(checkpoint, "cpu")
    network.temperature = 1.0
    probs, labels, tracks = [], [], []
    with torch.no_grad():
        for audio, label, track in loader:
            probs.append(network(to_float(audio)).double())
            labels.append(label)
            tracks.append(track)
    return tuple(torch.cat(x).numpy() for x in (probs, labels, tracks))


def test_the_test_split_is_scored_by_the_best_checkpoint_not_the_last_epoch(logged_run, logged_datamodule):
    """The checkpoint a run calibrates and that predict, evaluate and export use is the one whose
    test scores metrics.json and test_tracks.csv report: its probabilities on the test clips, taken
    again here in evaluation mode, are the ones recorded; the last epoch's are not."""
    folder, _ = logged_run
    best = Path(read_metrics(folder)["best_checkpoint"])
    assert best.name == "epoch000.ckpt", "the run's monitor must keep an epoch before its last"
    with open(folder / "test_tracks.csv", newline="") as f:
        recorded = {Path(row["path"]): [float(row["p_hardcore"]), float(row["p_metal"])] for row in csv.DictReader(f)}
    recorded = np.array([recorded[source] for source, _ in logged_datamodule.tracks("test")])
    best_tracks = pool_tracks(*clips_of(best, logged_datamodule.test_dataloader()))[0]
    last_tracks = pool_tracks(*clips_of(folder / "checkpoints" / "last.ckpt", logged_datamodule.test_dataloader()))[0]
    np.testing.assert_allclose(recorded, best_tracks, atol=2e-6)
    assert np.abs(recorded - last_tracks).max() > 1e-3


def test_the_temperature_is_fitted_on_the_tested_checkpoints_validation_clips(logged_run, logged_datamodule):
    """metrics.json's validation NLL (what the temperature minimises) is that of the best checkpoint's
    validation clips pooled per track, not of its test clips."""
    folder, _ = logged_run
    metrics = read_metrics(folder)
    best = Path(metrics["best_checkpoint"])
    val_nll = track_nll(*clips_of(best, logged_datamodule.val_dataloader()), 1.0)
    test_nll = track_nll(*clips_of(best, logged_datamodule.test_dataloader()), 1.0)
    assert abs(val_nll - test_nll) > 1e-3  # the two sets can be told apart
    assert metrics["calibration"]["val_track_nll"]["before"] == pytest.approx(val_nll, abs=1e-6)


def test_the_optimised_value_is_the_tested_checkpoints_validation_score(trained_run: Path):
    """A sweeper must optimise the model that was tested (the best checkpoint), not the last epoch."""
    metrics = read_metrics(trained_run)
    assert metrics["monitor"]["metric"] == "val/loss"
    assert metrics["val"]["val/loss"] == pytest.approx(metrics["monitor"]["best"], rel=1e-4)


def test_a_misspelt_optimized_metric_is_refused_before_training_with_the_valid_names(tmp_path):
    """A sweeper given None (what a misspelt name returned) optimises nothing and says nothing."""
    cfg = train_config(*tiny_overrides(tmp_path / "fresh"), "optimized_metric=val/track_F1")
    with pytest.raises(
        UserError, match=r"optimized_metric=val/track_F1 is not a metric .*: val/loss, val/acc, .*val/track_f1, "
    ):
        run(cfg)
    assert not (tmp_path / "fresh").exists()
    metrics = {"val": {"val/track_f1": 0.5}, "test": {"clip": {"acc": 0.75}, "track": {"f1": 0.25}}}
    for name, value in {"val/track_f1": 0.5, "test/acc": 0.75, "test/track_f1": 0.25, "test.track.f1": 0.25}.items():
        assert optimized_value(OmegaConf.create({"optimized_metric": name}), metrics) == value
    assert math.isnan(optimized_value(OmegaConf.create({"optimized_metric": "val/auroc"}), metrics))  # one class


def test_the_run_records_the_configuration_it_used(trained_run: Path):
    """config.yaml has every interpolation resolved: the precision actually chosen, absolute paths."""
    used = OmegaConf.load(trained_run / "config.yaml")
    assert used.trainer.precision == "32-true" and used.data.sample_rate == 16000
    assert "${" not in (trained_run / "config.yaml").read_text()
    environment = read_metrics(trained_run)["environment"]
    assert environment["precision"] == "32-true" and environment["accelerator"] == "CPUAccelerator"
