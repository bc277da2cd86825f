"""What preparing a library produced, in the words ``python -m metalcore.prepare`` prints.

The same summary is made by every caller of ``MusicDataModule.prepare`` (the prepare command and a
training run's ``prepare_data``), so a user reads one account of the library: tracks and hours per
class, what was decoded this time, the cache's size on disk and every file left out, with why.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metalcore.audio.cache import BuildResult
from metalcore.data.catalogue import Track


@dataclass(frozen=True)
class ClassTotals:
    """One class folder: tracks in the cache, their length, files that could not be used."""

    tracks: int = 0
    seconds: float = 0.0
    skipped: int = 0


@dataclass(frozen=True)
class PrepareSummary:
    """The library after a prepare: per-class totals, this call's work, the cache's size, skipped files."""

    root: Path
    cache_folder: Path
    classes: dict[str, ClassTotals]
    skipped: list[tuple[Path, str]]
    decoded: int
    already: int  # tracks whose entry was in the cache before this call
    track_bytes: int  # the int16 samples of this library's tracks
    folder_bytes: int  # everything in the cache folder for this rate and channel count
    wall_seconds: float
    segment_seconds: float = 0.0
    short: int = 0  # tracks shorter than a segment: zero-padded wherever they are read

    @property
    def tracks(self) -> int:
        return sum(c.tracks for c in self.classes.values())

    @property
    def hours(self) -> float:
        return sum(c.seconds for c in self.classes.values()) / 3600

    @property
    def skipped_csv(self) -> Path:
        return self.cache_folder / "skipped.csv"

    def headline(self) -> str:
        """One line for a training log: totals, what was decoded, how many files were skipped."""
        line = (
            f"prepared {self.tracks} tracks ({self.hours:.2f} h) in {len(self.classes)} classes from {self.root}; "
            f"decoded {self.decoded} in {self.wall_seconds:.1f} s; cache {_size(self.folder_bytes)} "
            f"in {self.cache_folder}"
        )
        if self.skipped:
            line += f"; skipped {len(self.skipped)} files, listed in {self.skipped_csv}"
        if self.short:
            line += f"; {self.padding()}"
        return line

    def padding(self) -> str:
        """How many tracks are shorter than a segment, so that every clip of them is partly silence."""
        advice = f"; lower data.segment_seconds={self.segment_seconds:g}" if 2 * self.short > self.tracks else ""
        return (
            f"{self.short} of {self.tracks} tracks are shorter than a segment ({self.segment_seconds:g} s) "
            f"and are padded with silence{advice}"
        )

    def lines(self) -> list[str]:
        """The full report: a per-class table, then work done, cache size and the skipped files."""
        width = max(len("class"), len("total"), *map(len, self.classes))
        rows = [f"{'class':<{width}}  {'tracks':>6}  {'hours':>7}  {'h:mm:ss':>9}  {'skipped':>7}"]
        total = ClassTotals(self.tracks, self.hours * 3600, len(self.skipped))
        for name, c in [*sorted(self.classes.items()), ("total", total)]:
            rows.append(
                f"{name:<{width}}  {c.tracks:>6}  {c.seconds / 3600:>7.2f}  {_clock(c.seconds):>9}  {c.skipped:>7}"
            )
        rows += [
            f"library: {self.root}",
            f"decoded {self.decoded} track{'' if self.decoded == 1 else 's'} this time ({self.already} already cached) "
            f"in {self.wall_seconds:.1f} s",
            f"cache: {_size(self.folder_bytes)} on disk in {self.cache_folder} "
            f"(this library's tracks: {_size(self.track_bytes)}, int16)",
        ]
        if self.skipped:
            rows.append(f"skipped {len(self.skipped)} files (listed in {self.skipped_csv}):")
            rows += [f"  {path}: {reason}" for path, reason in self.skipped]
        else:
            rows.append("skipped 0 files")
        if self.short:
            rows.append(self.padding())
        return rows

    def __str__(self) -> str:
        return "\n".join(self.lines())


def summarise(
    root: Path,
    tracks: Sequence[Track],
    result: BuildResult,
    cache_folder: Path,
    wall_seconds: float,
    segment_seconds: float = 0.0,
) -> PrepareSummary:
    """Join the catalogue with a cache build's result into a ``PrepareSummary``."""
    totals: dict[str, list[float]] = {t.label: [0, 0.0, 0] for t in tracks}
    track_bytes = 0
    skipped = {path for path, _ in result.skipped}
    for t in tracks:
        if cached := result.tracks.get(t.path):
            totals[t.label][0] += 1
            totals[t.label][1] += cached.duration
            track_bytes += cached.frames * cached.channels * 2
        elif t.path in skipped:
            totals[t.label][2] += 1
    return PrepareSummary(
        root=Path(root),
        cache_folder=Path(cache_folder),
        classes={name: ClassTotals(int(n), s, int(k)) for name, (n, s, k) in totals.items()},
        skipped=list(result.skipped),
        decoded=result.decoded,
        already=sum(cached.path not in result.fresh for cached in result.tracks.values()),
        track_bytes=track_bytes,
        folder_bytes=folder_size(cache_folder),
        wall_seconds=wall_seconds,
        segment_seconds=segment_seconds,
        short=sum(cached.duration < segment_seconds for cached in result.tracks.values()),
    )


def folder_size(folder: Path) -> int:
    """Bytes of the files directly in ``folder`` (0 when it does not exist)."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:  # removed by a concurrent build meanwhile
                    pass
    except FileNotFoundError:
        pass
    return total


def _size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``3.4 MiB``, ``1.2 GiB``."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _clock(seconds: float) -> str:
    """``h:mm:ss``."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
