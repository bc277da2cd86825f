"""The catalogue: which tracks exist and what they are, read from the folder layout alone.

``root/<class>/**/<Artist - Title>.<ext>``: the folder names the class, the file name the artist,
a sub-folder the album.
Reading it costs a directory walk, never a decode, so it is cheap to redo on every run.
"""

from __future__ import annotations

import os
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
    return walk(folder)[0]


def walk(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(audio files under ``folder``, sorted; (sub-folder, reason) for each one that could not be read).

    Symlinked sub-folders are followed (a library assembled from links is common), each real folder
    once, so a link to a folder already read cannot loop. A link up the tree (to ``folder`` or a
    folder holding it, such as ``metal/up -> ..``) is not followed: it would lead through the data
    root into the other classes. Either is reported, as is a folder that cannot be listed: nothing
    is passed over in silence.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    base = os.path.realpath(folder)

    def unreadable(err: OSError) -> None:
        problems.append((Path(err.filename), f"folder not read: {err.strerror or err}"))

    for top, dirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in seen:
            problems.append((Path(top), "folder not read again: a link to a folder already read"))
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        real = os.path.realpath(top)
        if top != str(folder) and (base == real or base.startswith(real.rstrip(os.sep) + os.sep)):
            problems.append(
                (Path(top), f"folder not read: a link up the tree to {real}, which holds this class folder")
            )
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(top) / name for name in names if is_audio(Path(top) / name)]
    return sorted(files), problems


def unreadable_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder, reason) for every folder in the class folders of ``root`` whose files could not be listed."""
    return [problem for folder in class_folders(root) for problem in walk(folder)[1]]


def class_folders(root: Path) -> list[Path]:
    """The class folders of ``root``, sorted, hidden ones left out."""
    return [folder for folder in sorted(Path(root).iterdir()) if folder.is_dir() and not folder.name.startswith(".")]


def scan(root: Path, min_classes: int = 2, what: str = "data.root=") -> list[Track]:
    """Every track under ``root``, sorted by path so that everything downstream is reproducible.

    Training needs two classes; scoring a trained model on the tracks of one class (``min_classes=1``) is fine.
    ``what`` names the setting in messages (``data.root=``, or ``--data-root `` for evaluate).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{what}{root}: is a file, not a folder; give the folder that holds one folder per class")
    if not root.is_dir():
        raise UserError(f"{what}{root}: folder does not exist; {HOW_TO_START}")
    tracks = [
        Track(
            path.absolute(), folder.name, artist_from_name(path), album_from_folder(path, folder)
        )  # as found: a symlink keeps its own name
        for folder in class_folders(root)
        for path in audio_files(folder)
    ]
    if not tracks and any(is_audio(path) for path in root.iterdir()):
        raise UserError(
            f"{what}{root}: holds audio files but no class folders: it looks like the folder of one class; "
            "give the folder above it, which holds one folder per class"
        )
    if not tracks:
        raise UserError(f"{what}{root}: no audio files found; {HOW_TO_START}")
    classes = sorted({t.label for t in tracks})
    if len(classes) < min_classes:
        raise UserError(
            f"{what}{root}: only one class folder with audio ({classes[0]}); "
            f"a classifier needs at least two; {HOW_TO_START}"
        )
    return tracks
