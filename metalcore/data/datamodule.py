"""The LightningDataModule: catalogue -> shared audio cache -> track-level split -> segments.

``prepare_data`` decodes what is not cached yet (once per machine); ``setup`` only reads the
catalogue and the cache index, splits by track and lays out segment windows. DataLoader workers
do nothing but slice memory-mapped int16 audio.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from metalcore.audio.cache import AudioCache, CachedTrack, write_skipped
from metalcore.core.errors import UserError
from metalcore.core.files import write_csv
from metalcore.data.catalogue import scan
from metalcore.data.demo import DemoSet
from metalcore.data.segments import RandomCrops, SegmentDataset, Shard, grid
from metalcore.data.split import SPLITS, Split, artist_key, check_fractions
from metalcore.data.summary import PrepareSummary, summarise

log = logging.getLogger(__name__)
# how training crops are spread: per_track crops from every track, or the same number for every artist
SAMPLINGS = ("track", "artist")


@dataclass(frozen=True)
class Library:
    """The tracks that decoded, in catalogue order, with what the split and the segments need."""

    labels: list[str]
    artists: list[str]
    cached: list[CachedTrack]
    unreadable: Counter = field(default_factory=Counter)  # class -> files with no cache entry

    @property
    def sources(self) -> list[Path]:
        """The audio files, in catalogue order."""
        return [c.source for c in self.cached]


class MusicDataModule(LightningDataModule):
    """Full tracks in ``root/<class>/`` served as fixed-length stereo segments, split by track."""

    def __init__(
        self,
        root: str,
        cache_dir: str,
        sample_rate: int = 44100,
        channels: int = 2,
        segment_seconds: float = 5.5,
        segments_per_track: int = 60,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split: Split | None = None,
        batch_size: int = 16,
        num_workers: int = 4,
        seed: int = 0,
        output_dir: str | None = None,
        demo: DemoSet | None = None,
        workers_for_decoding: int = 0,
        sampling: str = "track",
    ) -> None:
        super().__init__()
        if channels not in (1, 2):
            raise UserError(f"data.channels={channels} must be 1 (mono) or 2 (stereo)")
        if sample_rate < 1000:
            raise UserError(f"data.sample_rate={sample_rate} is too low for music")
        if segment_seconds <= 0 or segments_per_track < 1 or batch_size < 1:
            raise UserError(
                f"data.segment_seconds={segment_seconds}, data.segments_per_track="
                f"{segments_per_track} and data.batch_size={batch_size} must be positive"
            )
        check_fractions(val_fraction, test_fraction)
        if sampling not in SAMPLINGS:
            raise UserError(f"data.sampling={sampling!r} is not one of {SAMPLINGS}")
        self.sampling = sampling
        self.root, self.demo = Path(root).expanduser().absolute(), demo
        self.cache = AudioCache(Path(cache_dir).expanduser().absolute(), sample_rate, channels)
        self.sample_rate, self.channels = sample_rate, channels
        self.segment_samples = round(segment_seconds * sample_rate)
        self.segments_per_track = segments_per_track
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split = split or Split()
        self.batch_size, self.seed = batch_size, seed
        self.num_workers = min(num_workers, os.cpu_count() or 1)
        self.workers_for_decoding = workers_for_decoding
        self.output_dir = Path(output_dir) if output_dir else None
        self.classes: list[str] = []
        self.summary: PrepareSummary | None = None
        self._library: Library | None = None
        self._splits: np.ndarray | None = None
        self.datasets: dict[str, SegmentDataset] = {}

    # -- preparing -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """``prepare``, logging one line per skipped file and the summary's headline.

        Lightning calls this before fit and again before test; the second call has nothing to do.
        """
        if self.summary is not None:
            return
        summary = self.prepare()
        for source, reason in summary.skipped:
            log.warning("skipped %s: %s", source, reason)
        log.info("%s", summary.headline())

    def prepare(self, progress: bool = True) -> PrepareSummary:
        """Make the demo set if asked for, decode every uncached track, list skipped files in skipped.csv.

        The whole of ``python -m metalcore.prepare``; a library already in the cache decodes nothing.
        """
        began = time.perf_counter()
        if self.demo is not None:
            self.demo.ensure(self.root)
        tracks = scan(self.root)
        result = self.cache.build([t.path for t in tracks], workers=self.workers_for_decoding, progress=progress)
        write_skipped(self.cache.folder / "skipped.csv", result.skipped)
        if self.output_dir is not None:  # the cache's list is shared by every library at this rate
            write_skipped(self.output_dir / "skipped.csv", result.skipped)
        self.classes = sorted({t.label for t in tracks})
        self.summary = summarise(self.root, tracks, result, self.cache.folder, time.perf_counter() - began)
        return self.summary

    def library(self) -> Library:
        """The catalogue joined with the cache index (no decoding): tracks that failed are left out."""
        tracks = scan(self.root)
        self.classes = sorted({t.label for t in tracks})
        rows = [(t, self.cache.lookup(t.path)) for t in tracks]
        unreadable = Counter(t.label for t, c in rows if c is None)
        rows = [(t, c) for t, c in rows if c is not None]
        return Library(
            labels=[t.label for t, _ in rows],
            artists=[str(c.tags.get("artist") or "").strip() or t.artist for t, c in rows],
            cached=[c for _, c in rows],
            unreadable=unreadable,
        )

    # -- splitting -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        lib = self.library()
        splits = self._assign(lib)
        index = {label: i for i, label in enumerate(self.classes)}
        for name in SPLITS:
            rows = np.flatnonzero(splits == name)
            self.datasets[name] = SegmentDataset(
                paths=np.array([str(lib.cached[i].path) for i in rows]),
                frames=np.array([lib.cached[i].frames for i in rows], dtype=np.int64),
                labels=np.array([index[lib.labels[i]] for i in rows], dtype=np.int64),
                channels=self.channels,
                length=self.segment_samples,
            )
        self._library = lib
        self._splits = splits
        if self.output_dir is not None and (self.trainer is None or self.trainer.is_global_zero):
            self.write_split(self.output_dir / "split.csv")

    def _assign(self, lib: Library) -> np.ndarray:
        """The split of each track; when skipped files left a class too small, the error says so."""
        skipped_csv = self.cache.folder / "skipped.csv"
        if not lib.cached:
            raise UserError(f"data.root={self.root}: none of the audio files could be decoded; see {skipped_csv}")
        try:
            for label in self.classes:
                if label not in lib.labels:
                    raise UserError(f"class '{label}' has no track that could be decoded")
            return self.split.assign(
                lib.labels,
                lib.artists,
                self.val_fraction,
                self.test_fraction,
                self.seed,
                contents=[c.path.name for c in lib.cached],
            )
        except UserError as err:
            if not lib.unreadable:
                raise
            lost = ", ".join(f"{n} in '{label}'" for label, n in sorted(lib.unreadable.items()))
            raise UserError(
                f"{err}; {sum(lib.unreadable.values())} files could not be decoded and were left "
                f"out ({lost}), see {skipped_csv}"
            ) from None

    def write_split(self, path: Path) -> None:
        """One row per track: anyone can check that no track (or artist) sits in two splits."""
        lib = self._library
        write_csv(
            path,
            ["split", "class", "artist", "duration_s", "path"],
            [
                [self._splits[i], lib.labels[i], lib.artists[i], f"{lib.cached[i].duration:.2f}", lib.cached[i].source]
                for i in np.argsort(self._splits, kind="stable")
            ],
        )

    def tracks(self, split: str) -> list[tuple[Path, str]]:
        """(source file, class) of each track in ``split``, in the order of the track index batches carry."""
        lib = self._library
        return [(lib.cached[i].source, lib.labels[i]) for i in np.flatnonzero(self._splits == split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Tracks and clips per split, for metrics.json and the logs."""
        return {
            name: {"tracks": len(ds), "clips": len(ds) * self.segments_per_track} for name, ds in self.datasets.items()
        }

    # -- serving ---------------------------------------------------------------------------------
    def _loader(self, split: str, sampler) -> DataLoader:
        if self.trainer is not None and self.trainer.world_size > 1:  # DDP: each rank reads its share
            sampler = Shard(sampler, self.trainer.global_rank, self.trainer.world_size, even=split == "train")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        groups = self.train_artists() if self.sampling == "artist" else None
        return self._loader(
            "train", RandomCrops(ds.frames, self.segment_samples, self.segments_per_track, self.seed, groups)
        )

    def train_artists(self) -> list[str]:
        """The artist of each training track, as the split compares them; a track without one is its own."""
        rows = np.flatnonzero(self._splits == "train")
        return [artist_key(self._library.artists[i]) or f"\0{i}" for i in rows]

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self._grid("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._grid("test"))

    def _grid(self, split: str) -> list[tuple[int, int]]:
        return [
            tuple(row)
            for row in grid(self.datasets[split].frames, self.segment_samples, self.segments_per_track).tolist()
        ]
