"""Decode each track once into a raw int16 file on disk, shared by every run and concurrent job.

Training reads short segments from many tracks every epoch; decoding compressed audio for each
segment would dominate the run (FFmpeg start-up per file), so tracks are decoded once into
``<key>.pcm`` files that DataLoader workers memory-map. The key hashes what changes the decoded
samples (the source's bytes, sample rate, channels, ``FORMAT_VERSION``) and nothing else, so
segment length or Mel settings never invalidate the cache, while an edited file or a new rate
does. A small per-source memo of (size, mtime_ns, content hash) avoids re-hashing unchanged files.

Entries are committed atomically (temp file, fsync, ``os.replace``; the ``.json`` last), so a
killed build never leaves an entry that reads as valid and the next build resumes. A per-entry
file lock makes concurrent builds decode each track once between them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np
from filelock import FileLock
from tqdm import tqdm

from metalcore.audio.decode import DecodeError, audible, read_tags, require_regular
from metalcore.core.errors import Interrupted, UserError
from metalcore.core.files import atomic_file, write_csv, write_json
from metalcore.core.processes import can_spawn

FORMAT_VERSION = 1  # bump when the decoded samples would change (resampler, down-mix, layout)
STALE_TEMP_SECONDS = 3600  # temp files this old belong to dead writers
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class CachedTrack:
    """One decoded track: raw int16 ``(frames, channels)`` in C order at ``path``."""

    source: Path
    path: Path
    frames: int
    channels: int
    sample_rate: int
    tags: dict = field(default_factory=dict, hash=False)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    def open(self) -> np.memmap:
        """Read-only memory map of the samples (open it inside each DataLoader worker)."""
        return np.memmap(self.path, dtype=np.int16, mode="r", shape=(self.frames, self.channels))


class DiskFull(Exception):
    """No space left while writing the entry of this source (its path is the argument)."""


@dataclass
class BuildResult:
    """What ``AudioCache.build`` found: entries by source as given, bad files, how many it decoded."""

    tracks: dict[Path, CachedTrack] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    decoded: int = 0
    fresh: set[Path] = field(default_factory=set)  # the entries (pcm files) this build wrote


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_skipped(path: Path, skipped: Sequence[tuple[Path, str]]) -> None:
    """Write the files a build skipped as CSV (``path,reason``), atomically."""
    write_csv(Path(path), ["path", "reason"], [(str(source), reason) for source, reason in skipped])


class AudioCache:
    """Decoded tracks at one sample rate and channel count, under ``root/<rate>hz-<channels>ch/``."""

    def __init__(self, root: Path, sample_rate: int, channels: int):
        self.root = Path(root)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.folder = self.root / f"{self.sample_rate}hz-{self.channels}ch"
        self.memo_dir = self.root / "sources"

    def _content_hash(self, source: Path) -> str:
        """blake2b of the file's bytes, recomputed only when its size or mtime changed."""
        require_regular(source)  # hashing a FIFO would wait forever
        st = source.stat()
        memo_path = self.memo_dir / f"{hashlib.blake2b(os.fsencode(source), digest_size=16).hexdigest()}.json"
        memo = _read_json(memo_path)
        if memo and memo.get("size") == st.st_size and memo.get("mtime_ns") == st.st_mtime_ns:
            return memo["blake2b"]
        digest = hashlib.blake2b(digest_size=20)
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        self.memo_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            memo_path,
            {"source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": digest.hexdigest()},
        )
        return digest.hexdigest()

    def _key(self, source: Path) -> str:
        content = self._content_hash(source)
        params = f"{content}|{self.sample_rate}|{self.channels}|{FORMAT_VERSION}"
        return hashlib.blake2b(params.encode(), digest_size=16).hexdigest()

    def _entry(self, source: Path, key: str) -> CachedTrack | None:
        """The committed entry for ``key``, or None unless both files exist and agree on the size."""
        meta = _read_json(self.folder / f"{key}.json")
        pcm = self.folder / f"{key}.pcm"
        try:
            frames, channels = int(meta["frames"]), int(meta["channels"])
            if frames <= 0 or pcm.stat().st_size != frames * channels * 2:
                return None
        except (TypeError, KeyError, ValueError, OSError):
            return None
        return CachedTrack(source, pcm, frames, channels, int(meta["sample_rate"]), dict(meta.get("tags", {})))

    def lookup(self, source: Path) -> CachedTrack | None:
        """The cached track for ``source`` without decoding; None when absent, stale or unreadable."""
        source = Path(source).resolve()
        try:
            return self._entry(source, self._key(source))
        except (OSError, DecodeError):
            return None

    def get(self, source: Path) -> CachedTrack:
        """The cached track for ``source``, decoding it now if needed (raises DecodeError)."""
        return self._get(Path(source).resolve())[0]

    def _get(self, source: Path) -> tuple[CachedTrack, bool]:
        """(entry, whether this call decoded it); decodes under the entry's lock, checking again first."""
        try:
            return self._get_or_decode(source)
        except OSError as err:
            if err.errno == errno.ENOSPC:  # the temp file is gone (atomic_file); everything committed stays
                raise DiskFull(str(source)) from None
            raise

    def _get_or_decode(self, source: Path) -> tuple[CachedTrack, bool]:
        try:
            key = self._key(source)
        except FileNotFoundError as err:
            raise DecodeError(source, "file not found") from err
        except OSError as err:
            raise DecodeError(source, f"cannot read file: {err.strerror or err}") from err
        if track := self._entry(source, key):
            return track, False
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(self.folder / f"{key}.lock"):
            if track := self._entry(source, key):  # another process committed it while we waited
                return track, False
            for stale in self.folder.glob(f"{key}.*.tmp"):  # left by a killed writer of this entry
                stale.unlink(missing_ok=True)
            try:
                return self._decode(source, key), True
            except DecodeError as err:  # remembered, so an unchanged broken file is not tried every run
                write_json(
                    self.folder / f"{key}.failed", {"source": str(source), "reason": err.reason, "av": av.__version__}
                )
                raise

    def remembered_failure(self, source: Path) -> str | None:
        """Why this exact content failed to decode before, with this PyAV; None if it never did."""
        try:
            meta = _read_json(self.folder / f"{self._key(Path(source).resolve())}.failed")
        except (OSError, DecodeError):
            return None
        return meta["reason"] if meta and meta.get("av") == av.__version__ else None

    def _decode(self, source: Path, key: str) -> CachedTrack:
        """Stream-decode into the pcm file, then commit the json that makes the entry valid."""
        frames = 0
        with atomic_file(self.folder / f"{key}.pcm") as f:  # a DecodeError, silence too, discards the temp file
            for block in audible(source, self.sample_rate, self.channels):
                f.write(block.tobytes())
                frames += len(block)
        tags = read_tags(source)
        write_json(
            self.folder / f"{key}.json",
            {
                "source": str(source),
                "frames": frames,
                "channels": self.channels,
                "sample_rate": self.sample_rate,
                "tags": tags,
                "format_version": FORMAT_VERSION,
            },
        )
        return CachedTrack(source, self.folder / f"{key}.pcm", frames, self.channels, self.sample_rate, tags)

    def _remove_stale_temps(self) -> None:
        """Delete temp files of writers that died long ago (recent ones may belong to live builds)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for folder in (self.folder, self.memo_dir):
            for tmp in folder.glob("*.tmp"):
                try:
                    if tmp.stat().st_mtime < cutoff:
                        tmp.unlink()
                except OSError:
                    pass

    def build(self, sources: Sequence[Path], workers: int = 0, progress: bool = False) -> BuildResult:
        """Make sure every source is cached; bad files land in ``skipped``, never raise.

        Cached sources are only looked up, files that failed before (same content, same PyAV) are
        reported again without a retry; the rest are decoded in-process (``workers=1``) or in a
        process pool (``workers=0`` means one per CPU; in-process where this process cannot start one,
        see ``metalcore.core.processes``). Results are keyed by the paths as given.
        """
        self._remove_stale_temps()
        unique = list(dict.fromkeys(Path(s) for s in sources))
        found: dict[Path, CachedTrack] = {}
        reasons: dict[Path, str] = {}
        decoded, fresh = 0, set()
        for source in unique:
            if track := self.lookup(source):
                found[source] = track
            elif reason := self.remembered_failure(source):
                reasons[source] = reason
        pending = [source for source in unique if source not in found and source not in reasons]
        workers = min(workers or os.cpu_count() or 1, len(pending)) if can_spawn() else 1
        args = [(self.root, self.sample_rate, self.channels, source) for source in pending]
        pool = (
            ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
            )
            if workers > 1
            else None
        )
        with tqdm(
            total=len(unique),
            initial=len(found),
            unit="file",
            desc=f"decoding to {self.folder.name}",
            disable=None if progress and pending else True,  # None: on a terminal only, no \r in log files
        ) as bar:
            try:
                if pool is None:
                    outcomes = map(_build_one, args)
                else:
                    outcomes = (f.result() for f in as_completed([pool.submit(_build_one, a) for a in args]))
                for source, track, was_decoded, reason in _stopping_when_full(outcomes, self, pending, found):
                    if track is None:
                        reasons[source] = reason
                    else:
                        found[source] = track
                        decoded += was_decoded
                        if was_decoded:
                            fresh.add(track.path)
                    bar.update()
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
        return BuildResult(
            tracks={s: found[s] for s in unique if s in found},  # input order
            skipped=[(s, reasons[s]) for s in unique if s in reasons],
            decoded=decoded,
            fresh=fresh,
        )


def _stopping_when_full(outcomes: Iterator, cache: AudioCache, pending: list[Path], found: dict) -> Iterator:
    """``outcomes``, until one hits a full disk or the build is stopped (Ctrl-C, SIGTERM): then one line
    with what was kept and what is left."""
    try:
        yield from outcomes
    except (KeyboardInterrupt, Interrupted) as stop:
        left = len([s for s in pending if s not in found])
        raise Interrupted.of(
            stop,
            f"the {len(found)} tracks cached so far are kept in {cache.folder}; run again to decode the {left} left",
        ) from None
    except DiskFull as err:
        missing = [s for s in pending if s not in found]
        needed = sum(decoded_bytes(s, cache.sample_rate, cache.channels) for s in missing)
        free = shutil.disk_usage(cache.folder).free
        raise UserError(
            f"data.cache_dir={cache.root}: disk full while decoding {err.args[0]}; the {len(found)} tracks "
            f"cached so far are kept, the {len(missing)} left need about {needed / 2**30:.1f} GiB "
            f"({free / 2**30:.1f} GiB free): free space or move data.cache_dir, then run again"
        ) from None


def decoded_bytes(source: Path, sample_rate: int, channels: int) -> int:
    """About how much room a source takes in the cache, from the length its container states (0 if none)."""
    try:
        with av.open(str(source)) as container:
            seconds = container.duration / av.time_base if container.duration else 0.0
    except (av.FFmpegError, OSError):
        return 0
    return round(seconds * sample_rate) * channels * 2


def exit_with_parent(parent: int) -> None:
    """Worker initializer: end this process when the build that started it dies.

    A pool's workers outlive a ``kill -9`` of their parent and wait on its pipe forever. Linux
    delivers SIGKILL to the worker when its parent exits (``PR_SET_PDEATHSIG``); elsewhere a daemon
    thread checks the parent every second.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the build says it once
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        watched = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):  # not Linux
        watched = False
    if os.getppid() != parent:  # died before the watch was set up
        os._exit(1)
    if not watched:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _build_one(args: tuple[Path, int, int, Path]) -> tuple[Path, CachedTrack | None, bool, str]:
    """Worker task (top-level so spawned processes can import it): (source, entry, decoded, reason)."""
    root, sample_rate, channels, source = args
    try:
        track, decoded = AudioCache(root, sample_rate, channels)._get(source.resolve())
        return source, track, decoded, ""
    except DecodeError as err:
        return source, None, False, err.reason
