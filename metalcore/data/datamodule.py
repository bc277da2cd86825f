"""The LightningDataModule: catalogue -> shared audio cache -> track-level split -> segments.

``prepare_data`` decodes what is not cached yet (once per machine); ``setup`` only reads the
catalogue and the cache index, splits by track and lays out segment windows. DataLoader workers
do nothing but slice memory-mapped int16 audio; with ``on_device`` the audio is copied to the
training device once and batches are cut there, with no workers at all.
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
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from metalcore.audio.cache import AudioCache, BuildResult, CachedTrack, write_skipped
from metalcore.audio.pcm import to_float
from metalcore.core.errors import UserError
from metalcore.core.files import make_folder, write_csv
from metalcore.core.processes import loader_workers
from metalcore.data.catalogue import scan, unreadable_folders
from metalcore.data.conflicts import one_label_each
from metalcore.data.demo import DemoSet
from metalcore.data.ondevice import DeviceSegments, KeyBatches, resolve
from metalcore.data.resumable import MidEpochResume
from metalcore.data.segments import RandomCrops, SegmentDataset, Shard, check_windows_fit, grid
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
    albums: list[str] = field(default_factory=list)  # album tag, else the album folder; "" when neither
    unreadable: Counter = field(default_factory=Counter)  # class -> files with no cache entry
    conflicts: Counter = field(default_factory=Counter)  # class -> decoded tracks left out as label conflicts

    @property
    def sources(self) -> list[Path]:
        """The audio files, in catalogue order."""
        return [c.source for c in self.cached]


def check_seed(seed: int) -> None:
    """NumPy, and so the split and the crops, take seeds from 0 to 2**32 - 1."""
    if not 0 <= seed < 2**32:
        raise UserError(f"seed={seed} must be an integer from 0 to {2**32 - 1}")


class MusicDataModule(MidEpochResume):
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
        on_device: str | bool = "auto",
        sampling: str = "track",
    ) -> None:
        super().__init__()
        if channels not in (1, 2):
            raise UserError(f"data.channels={channels} must be 1 (mono) or 2 (stereo)")
        if not 1000 <= sample_rate <= 768000:  # what audio uses, as the checkpoint's spec says
            raise UserError(f"data.sample_rate={sample_rate} must be from 1000 to 768000 Hz (44100 is usual)")
        if segment_seconds <= 0 or segments_per_track < 1 or batch_size < 1:
            raise UserError(
                f"data.segment_seconds={segment_seconds}, data.segments_per_track="
                f"{segments_per_track} and data.batch_size={batch_size} must be positive"
            )
        check_seed(seed)
        check_fractions(val_fraction, test_fraction)
        resolve(on_device, 0, torch.device("cpu"))  # a bad value fails here, before any decoding
        self.on_device = on_device
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
        self.announce = True  # log skipped files and the headline in prepare_data
        self._library: Library | None = None
        self._splits: np.ndarray | None = None
        self.datasets: dict[str, SegmentDataset] = {}
        self.held: dict[str, DeviceSegments] = {}  # splits held on the training device

    # -- preparing -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """``prepare``, logging one line per skipped file and the summary's headline.

        Lightning calls this before fit and again before test; the second call has nothing to do.
        Under DDP only global rank 0 logs, and nothing when ``announce`` is off (the process that
        started the ranks prepared the data and logged it already).
        """
        if self.summary is not None:
            return
        summary = self.prepare()
        if not self.announce or rank_zero_only.rank != 0:  # said once, by the process that reports
            return
        for source, reason in summary.skipped:
            log.warning("skipped %s: %s", source, reason)
        log.info("%s", summary.headline())

    def prepare(self, progress: bool = True) -> PrepareSummary:
        """Make the demo set if asked for, decode every uncached track, list skipped files in skipped.csv.

        The whole of ``python -m metalcore.prepare``; a library already in the cache decodes nothing.
        """
        began = time.perf_counter()
        make_folder(self.cache.root, "data.cache_dir=")  # before the demo set or any decoding is written there
        if self.demo is not None:
            self.demo.ensure(self.root)
        tracks = scan(self.root)
        check_windows_fit(len(tracks), self.segments_per_track)
        result = self.cache.build([t.path for t in tracks], workers=self.workers_for_decoding, progress=progress)
        kept, left_out = one_label_each(
            [t for t in tracks if t.path in result.tracks], lambda t: result.tracks[t.path].path
        )
        result = BuildResult(
            {t.path: result.tracks[t.path] for t in kept},
            [*unreadable_folders(self.root), *result.skipped, *left_out],
            result.decoded,
            result.fresh,
        )
        write_skipped(self.cache.folder / "skipped.csv", result.skipped)
        if self.output_dir is not None:  # the cache's list is shared by every library at this rate
            write_skipped(self.output_dir / "skipped.csv", result.skipped)
        self.classes = sorted({t.label for t in tracks})
        self.summary = summarise(
            self.root,
            tracks,
            result,
            self.cache.folder,
            time.perf_counter() - began,
            self.segment_samples / self.sample_rate,
        )
        return self.summary

    def library(self) -> Library:
        """The catalogue joined with the cache index (no decoding): tracks that failed, copies of one
        recording in two classes and second copies in one class are left out."""
        tracks = scan(self.root)
        self.classes = sorted({t.label for t in tracks})
        entries = {t.path: self.cache.lookup(t.path) for t in tracks}
        unreadable = Counter(t.label for t in tracks if entries[t.path] is None)
        kept, left_out = one_label_each([t for t in tracks if entries[t.path]], lambda t: entries[t.path].path)
        label = {t.path: t.label for t in tracks}
        conflicts = Counter(label[path] for path, reason in left_out if reason.startswith("label conflict"))
        rows = [(t, entries[t.path]) for t in kept]
        return Library(
            labels=[t.label for t, _ in rows],
            artists=[str(c.tags.get("artist") or "").strip() or t.artist for t, c in rows],
            cached=[c for _, c in rows],
            albums=[" ".join(str(c.tags.get("album") or "").split()) or t.album for t, c in rows],
            unreadable=unreadable,
            conflicts=conflicts,
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
                if label not in lib.labels and lib.conflicts[label]:
                    raise UserError(
                        f"class '{label}' has no track left: its {lib.conflicts[label]} tracks decoded but are the "
                        f"same recordings as tracks of another class (label conflicts), see {skipped_csv}"
                    )
                if label not in lib.labels:
                    raise UserError(f"class '{label}' has no track that could be decoded")
            return self.split.assign(
                lib.labels,
                lib.artists,
                self.val_fraction,
                self.test_fraction,
                self.seed,
                contents=[c.path.name for c in lib.cached],
                albums=[a.casefold() for a in lib.albums],
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
        """One row per track: anyone can check that no track (artist, album) sits in two splits."""
        lib = self._library
        write_csv(
            path,
            ["split", "class", "artist", "album", "duration_s", "path"],
            [
                [
                    self._splits[i],
                    lib.labels[i],
                    lib.artists[i],
                    lib.albums[i],
                    f"{lib.cached[i].duration:.2f}",
                    lib.cached[i].source,
                ]
                for i in np.argsort(self._splits, kind="stable")
            ],
        )

    def tracks(self, split: str) -> list[tuple[Path, str]]:
        """(source file, class) of each track in ``split``, in the order of the track index batches carry."""
        lib = self._library
        return [(lib.cached[i].source, lib.labels[i]) for i in np.flatnonzero(self._splits == split)]

    def durations(self, split: str) -> list[float]:
        """Seconds of each track in ``split``, in the order of ``tracks``."""
        lib = self._library
        return [lib.cached[i].duration for i in np.flatnonzero(self._splits == split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Tracks and clips per split, for metrics.json and the logs."""
        return {
            name: {"tracks": len(ds), "clips": len(ds) * self.segments_per_track} for name, ds in self.datasets.items()
        }

    # -- serving ---------------------------------------------------------------------------------
    def device(self) -> torch.device:
        """Where training runs: the trainer's device, the CPU without a trainer."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def holds_on_device(self) -> bool:
        """``on_device`` resolved against the whole library's int16 bytes and the training device."""
        nbytes = sum(int(ds.frames.sum()) * ds.channels * 2 for ds in self.datasets.values())
        return resolve(self.on_device, nbytes, self.device())

    def _loader(self, split: str, sampler) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if self.holds_on_device():  # each DDP rank holds the audio on its own device
            if split not in self.held:
                self.held[split] = DeviceSegments(self.datasets[split], self.device())
                log.info("%s audio on %s: %.2f GB", split, self.device(), self.held[split].nbytes / 1e9)
            batches = KeyBatches(sampler, self.batch_size, rank, world, even=split == "train")
            return DataLoader(self.held[split], sampler=batches, batch_size=None, num_workers=0)
        if world > 1:  # DDP: each rank reads its share
            sampler = Shard(sampler, rank, world, even=split == "train")
        workers, context = loader_workers(self.num_workers)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            multiprocessing_context=context,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batches cross to the device as int16 (half the bytes of float32) and become float there."""
        audio, *rest = batch
        return (to_float(audio), *rest)

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        groups = self.train_artists() if self.sampling == "artist" else None
        crops = RandomCrops(ds.frames, self.segment_samples, self.segments_per_track, self.seed, groups)
        world = self.trainer.world_size if self.trainer is not None else 1
        return self._loader("train", self.resumable(crops, self.batch_size * world))

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
