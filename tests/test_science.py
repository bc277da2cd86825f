"""What the study's conclusions rest on, tested directly: no track (or artist) is heard in two splits,
a clip is scored on its own and as a sequence, and a track's score is the mean of its clips'.

Each break below once passed the whole suite; applied on purpose, it now fails the tests named:
- the GRU built with ``batch_first=False``: ``test_a_clips_logits_do_not_depend_on_the_rest_of_its_batch``
  (crnn), ``test_logits_depend_on_the_whole_clip_and_on_time_order`` (study), and
  ``test_models.py::test_last_step_pooling_reads_each_direction_after_the_whole_clip``;
- track pooling that keeps each track's first clip: ``test_track_scores_are_the_mean_of_their_clip_probabilities``;
- test tracks swapped for same-class training tracks: ``test_each_split_serves_only_its_own_tracks``.
"""

from __future__ import annotations

import csv
import functools
import itertools
from collections import defaultdict
from pathlib import Path

import hydra
import pytest
import torch
from conftest import train_config
from lightning.pytorch import Trainer

from metalcore.data.datamodule import MusicDataModule
from metalcore.data.demo import DemoSet
from metalcore.data.split import SPLITS, Split
from metalcore.models.crnn import CRNN
from metalcore.models.frontend import MelFrontend
from metalcore.training.module import GenreClassifier

REPO = Path(__file__).resolve().parents[1]
SR = 16000
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def datamodule(root: Path, cache_dir: Path, output_dir: Path, **kw) -> MusicDataModule:
    params = dict(
        root=str(root),
        cache_dir=str(cache_dir),
        sample_rate=SR,
        segment_seconds=0.5,
        segments_per_track=3,
        val_fraction=0.25,
        test_fraction=0.25,
        batch_size=4,
        num_workers=0,
        output_dir=str(output_dir),
        workers_for_decoding=1,
    )
    dm = MusicDataModule(**{**params, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


# -- splits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_bands(tmp_path_factory) -> Path:
    """9 short tracks per class by 3 bands each: enough to split by artist into three splits."""
    return DemoSet(tracks_per_class=9, seconds=2.0, seed=0, sample_rate=SR).ensure(
        tmp_path_factory.mktemp("bands") / "set"
    )


@pytest.mark.parametrize("group_by", ["track", "artist"])
def test_each_split_serves_only_its_own_tracks(group_by, three_bands, tmp_path):
    """The audio files each split's loader reads are the ones split.csv lists for it, and the three
    sets of sources (and of artists, when grouped by artist) are disjoint."""
    dm = datamodule(three_bands, tmp_path / "cache", tmp_path / "run", split=Split(group_by), test_fraction=0.34)
    with open(tmp_path / "run" / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    listed = {s: {Path(r["path"]) for r in rows if r["split"] == s} for s in SPLITS}
    artist_of = {Path(r["path"]): r["artist"] for r in rows}
    cache_file = {source: str(dm.cache.lookup(source).path) for source in artist_of}
    source_of = {file: source for source, file in cache_file.items()}
    served = {s: {source_of[str(file)] for file in dm.datasets[s].paths} for s in SPLITS}
    for split in SPLITS:
        assert served[split] == listed[split], split
        assert [source for source, _ in dm.tracks(split)] == [source_of[str(p)] for p in dm.datasets[split].paths]
    for a, b in itertools.combinations(SPLITS, 2):
        assert not served[a] & served[b], (a, b)
        if group_by == "artist":
            assert not {artist_of[s] for s in served[a]} & {artist_of[s] for s in served[b]}, (a, b)
    assert set().union(*served.values()) == set(artist_of) and len(artist_of) == 18


# -- a clip is scored on its own, as a sequence ---------------------------------------------------


@functools.cache
def network(name: str) -> tuple[torch.nn.Module, tuple[int, int]]:
    """``model=<name>`` as the training command builds it, in eval mode, with the (channels, Mel bands)
    its front-end gives it (stereo and 64 bands by default; musicnn's own mono 96)."""
    cfg = train_config(f"model={name}")
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model, num_classes=2).eval(), (cfg.model.in_channels, cfg.model.n_mels)


def spectrograms(shape: tuple[int, int], batch: int = 3, frames: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *shape, frames, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MODELS)
def test_a_clips_logits_do_not_depend_on_the_rest_of_its_batch(name):
    """A GRU reading the batch axis as time (``batch_first=False``) would mix clips together."""
    net, shape = network(name)
    x = spectrograms(shape)
    other = x.clone()
    other[1:] = spectrograms(shape, batch=2, seed=2)
    with torch.no_grad():
        alone, together, changed = net(x[:1]), net(x), net(other)
    assert torch.allclose(together[:1], alone, atol=1e-5) and torch.allclose(changed[:1], alone, atol=1e-5)
    assert not torch.allclose(changed[1:], together[1:])


@pytest.mark.parametrize("name", MODELS)
def test_logits_depend_on_the_whole_clip_and_on_time_order(name):
    """Every model hears the opening frames; the sequence models also hear their order.

    MelStats reads each band's mean and spread, which ignore order by design.
    """
    net, shape = network(name)
    x = spectrograms(shape)
    early = x.clone()
    early[..., :16] = spectrograms(shape, frames=16, seed=3)
    with torch.no_grad():
        logits, early_changed, reversed_ = net(x), net(early), net(x.flip(-1))
    assert not torch.allclose(logits, early_changed, atol=1e-4), "the first quarter of the clip is ignored"
    if name != "stats":
        assert not torch.allclose(logits, reversed_, atol=1e-4), "time order makes no difference"


# -- a track's score is the mean of its clips' ----------------------------------------------------


def test_track_scores_are_the_mean_of_their_clip_probabilities(demo_root, cache_dir, tmp_path):
    """The pooled probabilities behind val/track_* and test/track_* (which pick checkpoints) are
    the mean of each track's clip probabilities, and the reported track accuracy follows from them."""
    dm = datamodule(demo_root, cache_dir, tmp_path)
    torch.manual_seed(0)
    frontend = MelFrontend(SR, n_mels=32, n_fft=512, hop_length=256)
    net = CRNN(2, 2, 32, channels=(8, 16), gru_hidden=8)
    module = GenreClassifier(frontend, net, dm.classes, optimizer=torch.optim.Adam)
    pooled = {}
    module.track_metrics["test"].register_forward_pre_hook(lambda m, args: pooled.update(probs=args[0].clone()))
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=dm, verbose=False)

    clips, labels = defaultdict(list), {}
    module.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            audio, y, tracks = dm.on_after_batch_transfer(batch, 0)  # int16 -> float, as the Trainer does
            for p, label, track in zip(module(audio).softmax(-1), y.tolist(), tracks.tolist()):
                clips[track].append(p)
                labels[track] = label
    assert set(clips) == set(range(len(dm.datasets["test"]))) and all(len(c) == 3 for c in clips.values())
    mean = torch.stack([torch.stack(clips[t]).mean(0) for t in sorted(clips)])
    first = torch.stack([clips[t][0] for t in sorted(clips)])
    assert not torch.allclose(mean, first, atol=1e-3), "clips of a track must differ for this test to tell"
    assert torch.allclose(pooled["probs"], mean, atol=1e-5)
    truth = torch.tensor([labels[t] for t in sorted(clips)])
    accuracy = (mean.argmax(1) == truth).float().mean().item()
    assert module.results["test"]["track"]["acc"] == pytest.approx(accuracy)
