"""The catalogue: which tracks exist and what they are, read from the folder layout alone.

``root/<class>/**/<Artist - Title>.<ext>``: the folder names the class, the file name the artist,
a sub-folder the album.
Reading it costs a directory walk, never a decode, so it is cheap to redo on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metalcore.audio.decode import AUDIO_SUFFIXES
from metalcore.core.errors import UserError

HOW_TO_START = (
    "put full tracks in <root>/<class>/ (e.g. data_music/metal/ and data_music/hardcore/), "
    "or try the synthetic demo: python -m metalcore.train data=synthetic"
)


@dataclass(frozen=True)
class Track:
    """One audio file and the class its folder gives it."""

    path: Path
    label: str
    artist: str
    album: str = ""  # the sub-folder under the class folder (``Artist/Album``); "" for a file directly in it


def artist_from_name(path: Path) -> str:
    """ "Artist - Title.ext" -> "Artist"; a name without the separator is its own artist."""
    artist, sep, _ = path.stem.partition(" - ")
    return artist.strip() if sep and artist.strip() else path.stem


def album_from_folder(path: Path, class_folder: Path) -> str:
    """``<class>/Artist/Album/x.flac`` -> ``Artist/Album``: a sub-folder stands for an album without a tag."""
    parent = path.parent.relative_to(class_folder)
    return parent.as_posix() if parent.parts else ""


def is_audio(path: Path) -> bool:
    """Audio suffix in any case; hidden and system files (``.DS_Store``, ``._name``) are never tracks."""
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".") and path.is_file()


def audio_files(folder: Path) -> list[Path]:
    """The audio files under ``folder``, sorted, leaving out hidden files and anything in hidden folders."""
    return sorted(
        path
        for path in folder.rglob("*")
        if is_audio(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def scan(root: Path) -> list[Track]:
    """Every track under ``root``, sorted by path so that everything downstream is reproducible."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root={root}: folder does not exist; {HOW_TO_START}")
    tracks = [
        Track(path.resolve(), folder.name, artist_from_name(path), album_from_folder(path, folder))
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for path in audio_files(folder)
    ]
    if not tracks:
        raise UserError(f"data.root={root}: no audio files found; {HOW_TO_START}")
    classes = sorted({t.label for t in tracks})
    if len(classes) < 2:
        raise UserError(
            f"data.root={root}: only one class folder with audio ({classes[0]}); "
            f"a classifier needs at least two; {HOW_TO_START}"
        )
    return tracks
