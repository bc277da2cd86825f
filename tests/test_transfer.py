"""``model=musicnn``: the pretrained tagger probed frozen or fine-tuned, and ``python -m metalcore.tags``.

The weights are the real ones (``musicnn_cache`` fetches them once per session); the library is
the session's tiny synthetic one, at musicnn's 16 kHz mono in 3 s clips.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_DEMO, read_metrics, run_module, train_config

from metalcore import evaluate, export
from metalcore.core.errors import UserError
from metalcore.inference.checkpoint import Classifier
from metalcore.models.musicnn import MSD_TAGS
from metalcore.models.transfer import MusicnnTransfer
from metalcore.training.experiment import build


def musicnn_overrides(cache_dir: Path, *extra: str) -> list[str]:
    """The tiny synthetic library through ``model=musicnn``: 3 clips of 3 s per track, 3 epochs."""
    return [
        "data=synthetic",
        "model=musicnn",
        f"paths.cache_dir={cache_dir}",
        f"data.demo.tracks_per_class={TINY_DEMO.tracks_per_class}",
        f"data.demo.seconds={TINY_DEMO.seconds}",
        f"data.demo.sample_rate={TINY_DEMO.sample_rate}",
        "data.segments_per_track=3",
        "data.batch_size=6",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.num_workers=0",
        "data.workers_for_decoding=1",
        "trainer=cpu",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        *extra,
    ]


def config(cache_dir: Path, tmp_path: Path, *extra: str):
    return train_config(*musicnn_overrides(cache_dir, *extra), f"paths.output_dir={tmp_path}")


@pytest.fixture(scope="module")
def probe_folds(tmp_path_factory, musicnn_cache: Path, demo_root: Path) -> Path:
    """A two-fold sweep of the frozen probe, as a user runs it: one process, two jobs on one cache."""
    sweep = tmp_path_factory.mktemp("probe")
    result = run_module(
        "metalcore.train",
        "-m",
        *musicnn_overrides(musicnn_cache, "data.split.folds=2", "data.split.fold=0,1", f"hydra.sweep.dir={sweep}"),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def features_line(job: Path) -> tuple[int, int]:
    """(computed, read from the cache) in the job's log line about clip features."""
    found = re.search(r"clip features of \d+ tracks: (\d+) computed, (\d+) from ", (job / "train.log").read_text())
    assert found, f"no clip-features line in {job / 'train.log'}"
    return int(found[1]), int(found[2])


def test_the_frozen_probe_trains_and_the_second_fold_reads_every_feature_from_the_cache(probe_folds):
    tracks = 2 * TINY_DEMO.tracks_per_class
    first, second = (features_line(probe_folds / str(job)) for job in (0, 1))
    assert first[0] > 0 and sum(first) == tracks
    assert second == (0, tracks), "the second fold computed features again"
    for job in (0, 1):
        metrics = read_metrics(probe_folds / str(job))
        assert metrics["test"]["track"]["acc"] >= 0.5 and metrics["counts"]["test"]["tracks"] > 0


def test_the_checkpoint_records_the_weights_source_and_serves_evaluate_and_export(probe_folds, tmp_path, capsys):
    ckpt = Path(read_metrics(probe_folds / "0")["best_checkpoint"])
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["spec"]
    source = spec["pretrained"]
    assert (source["package"], source["version"], source["licence"]) == ("musicnn", "0.1.0", "ISC")
    assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"]) and source["model"] == "MSD_musicnn"
    classifier = Classifier.from_checkpoint(ckpt, "cpu")
    assert classifier.sample_rate == 16000 and classifier.channels == 1 and classifier.segment_samples == 48000

    assert evaluate.main([str(ckpt), "--output-dir", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    assert (tmp_path / "eval" / "tracks.csv").is_file() and "track: acc" in capsys.readouterr().out

    out = tmp_path / "probe.onnx"
    assert export.main([str(ckpt), "--format", "onnx", "--output", str(out)]) == 0
    import onnxruntime

    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 1, 52000))).astype(np.float32)
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"audio": audio})[0]
    with torch.no_grad():
        expected = classifier(torch.from_numpy(audio)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)  # the front-end travels inside the artefact


def test_fine_tuning_trains_the_backbone_at_its_share_of_the_rate_and_the_probe_only_the_head(tmp_path):
    net = MusicnnTransfer(2, pretrained=False, freeze=False, backbone_lr=0.1)
    groups = net.parameter_groups()
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in net.backbone.parameters()}
    frozen = MusicnnTransfer(2, pretrained=False, freeze=True)
    (head,) = frozen.parameter_groups()
    assert {id(p) for p in head["params"]} == {id(p) for p in frozen.head.parameters()}
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    frozen.train()
    assert frozen.head.training and not frozen.backbone.training, "a frozen backbone keeps its batch-norm statistics"
    tuned, probe = train_config("model=musicnn_finetune"), train_config("model=musicnn")
    # the new head learns at 1e-2 either way; a fine-tuned backbone at 1e-4
    assert probe.module.optimizer.lr == tuned.module.optimizer.lr == 0.01 and probe.model.freeze
    assert not tuned.model.freeze and tuned.module.optimizer.lr * tuned.model.backbone_lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment=light", r"augment \(gain, specaugment\): a frozen probe \(model.freeze=true\) trains on cached"),
        ("data.segment_seconds=2", r"data.segment_seconds=2: musicnn's models were trained on 3 s patches"),
        ("data.sample_rate=22050", r"data.sample_rate=22050: musicnn's weights were trained on 16000 Hz"),
        ("data.channels=2", r"data.channels=2: musicnn hears mono"),
        ("model.features=logits", r"model.features='logits' is not one of"),
    ],
)
def test_a_setting_musicnn_cannot_use_is_refused_naming_the_key(cache_dir, demo_root, tmp_path, override, message):
    cfg = config(cache_dir, tmp_path, "model.pretrained=false", override)
    with pytest.raises(UserError, match=message):
        build(cfg)


def test_tags_writes_every_track_s_tags_and_the_tags_that_separate_each_class(musicnn_cache, demo_root, tmp_path):
    out = tmp_path / "tags"
    result = run_module(
        "metalcore.tags", str(demo_root), "--cache-dir", str(musicnn_cache), "--output-dir", str(out), "--top", "3"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * TINY_DEMO.tracks_per_class and list(rows[0])[2:] == list(MSD_TAGS)
    assert {r["class"] for r in rows} == {"hardcore", "metal"}
    assert all(0 <= float(r["metal"]) <= 1 for r in rows)
    with open(out / "separating_tags.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 50
    for row in table:
        auc, low, high = float(row["auc"]), float(row["auc_low"]), float(row["auc_high"])
        assert 0 <= low <= auc <= high <= 1
    best = next(r for r in table if r["class"] == "metal" and r["rank"] == "1")
    # recomputed from tags.csv: the AUC of the best tag for metal against hardcore
    scores = np.array([float(r[best["tag"]]) for r in rows])
    metal = np.array([r["class"] == "metal" for r in rows])
    auc = np.mean([(s > scores[~metal]).mean() + 0.5 * (s == scores[~metal]).mean() for s in scores[metal]])
    assert float(best["auc"]) == pytest.approx(auc, abs=1e-4)
    assert "metal (8 tracks)" in result.stdout and f"  {best['tag']}" in result.stdout


def test_the_experiments_put_musicnn_beside_our_networks_each_with_its_own_front_end():
    pretrained = train_config("experiment=pretrained", hydra=True)
    ours = train_config("experiment=artist_effect")
    probe = train_config("experiment=artist_effect", "model=musicnn")
    assert dict(pretrained.hydra.sweeper.params) == {
        "model": "crnn,study,musicnn,musicnn_finetune",
        "data.split.fold": "0,1,2,3,4",
    }
    assert pretrained.data.split.folds == 5
    # the artist-effect CRNN is the one the experiment always trained; musicnn brings its own input
    assert (list(ours.model.channels), ours.model.gru_hidden, ours.features.n_mels) == ([8, 16, 32], 32, 32)
    assert probe.features._target_.endswith("MusicnnFrontend") and "channels" not in probe.model
    assert (probe.data.sample_rate, probe.data.channels, probe.data.segment_seconds) == (16000, 1, 3.0)
    assert probe.data.demo.artists == ours.data.demo.artists  # the same synthetic bands
