"""Atomic file writes: a reader sees the old file or the new one, never half of one.

POSIX file names are bytes; Python hands a name that is not valid UTF-8 (``Mot\xf6rhead.flac`` from an
old rip) over as a string with lone surrogates (``surrogateescape``), which strict UTF-8 refuses.
Every text file metalcore writes or reads goes through ``TEXT`` so such names round-trip byte for
byte; JSON escapes them (``\udcf6``) and Python reads them back the same way.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from metalcore.core.errors import UserError

TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def writable_file(path: Path, what: str) -> Path:
    """``path`` if a file can be written there, else UserError naming ``what`` (e.g. ``--output``).

    Checked before the work that produces the file: a bad path must not cost a whole prediction.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{_named(what, path)}: is a folder; give a file name")
    existing = _writable_folder(path.parent, what, path)
    longest = _name_max(existing) - _TEMPORARY_SUFFIX_BYTES
    if len(os.fsencode(path.name)) > longest:
        raise UserError(
            f"{_named(what, path)}: its name is {len(os.fsencode(path.name))} bytes; at most {longest} fit "
            "(it is written under a temporary name a little longer first)"
        )
    return path


def writable_folder(path: Path, what: str) -> Path:
    """``path`` if it is, or can be made, a folder to write in; else UserError naming ``what``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{_named(what, path)}: is a file, not a folder")
    _writable_folder(path, what, path)
    return path


def make_folder(path: Path, what: str) -> Path:
    """``writable_folder``, then made: what the check cannot see (a read-only mount) still comes as one line."""
    writable_folder(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a name of its own: DDP ranks and sweep jobs check at once
            pass
    except OSError as err:
        raise UserError(f"{_named(what, path)}: cannot write there ({err.strerror or err})") from None
    return path


def _writable_folder(folder: Path, what: str, shown: Path) -> Path:
    """The nearest existing folder of ``folder``, once a file has been made and removed there."""
    existing = folder.absolute()
    while not existing.exists():  # the nearest folder that exists is where the new ones would be made
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{_named(what, shown)}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{_named(what, shown)}: cannot write in {existing} (permission denied or read-only)")
    try:  # what access() cannot see: a read-only mount for root, /proc, a full quota
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{_named(what, shown)}: cannot write in {existing} ({err.strerror or err})") from None
    return existing


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _temporary_name(path: Path) -> str:
    """The name ``atomic_file`` writes ``path`` under until it is complete."""
    return f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


_TEMPORARY_SUFFIX_BYTES = len(".4194304.0123abcd.tmp")  # with the longest process id Linux gives


def _named(what: str, path: Path) -> str:
    """``--output x`` or ``data.cache_dir=x``: the option or key as the user typed it."""
    return f"{what}{path}" if what.endswith("=") else f"{what} {path}"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write to a temp file beside ``path``; fsync and rename it into place only on success.

    The temp name carries the writer's pid, so leftovers of a killed writer can be recognised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_temporary_name(path))
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file being written, not its temporary name
        if err.filename not in (None, str(tmp)):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``text`` as UTF-8 (undecodable file names as their bytes), atomically."""
    with atomic_file(path) as f:
        f.write(text.encode(**TEXT))


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented, standard JSON, atomically: NaN and infinities become null (Python's
    ``NaN`` is not JSON and other readers refuse it), anything else JSON cannot hold its str."""
    write_text(path, json.dumps(_standard(value), indent=2, default=str, allow_nan=False) + "\n")


def _standard(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _standard(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_standard(v) for v in value]
    return value


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A header and rows as CSV, atomically (every table metalcore writes goes through here).

    The writer quotes a field holding a character of its line terminator, and only those: with
    ``"\n"`` a file name holding ``\r`` went out bare and split its row when read. So it writes
    ``"\r\n"`` (both quoted), and each row's terminator becomes ``"\n"`` as it is written.
    """
    text = _LineFeedRows()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())


class _LineFeedRows(io.StringIO):
    """A text buffer for a csv writer that ends each row (one ``write`` call) in ``\n`` instead of ``\r\n``."""

    def write(self, row: str) -> int:
        return super().write(row[:-2] + "\n" if row.endswith("\r\n") else row)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV that ``write_csv`` wrote, as dicts by header."""
    with open(path, newline="", **TEXT) as f:
        return list(csv.DictReader(f))
