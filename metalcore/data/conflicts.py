"""One recording, one label: copies and symlinks of a track found by its decoded content.

A library grown over years holds the same recording more than once: a copy on a compilation, a
symlink, a whole class folder linked into another. The cache keys entries by content, so copies
share one entry. In two classes the copies give the model contradictory labels: every one of them
is left out and listed as a label conflict. In one class they would weigh the song twice: the
first (in catalogue order) stays, the others are listed as duplicates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from metalcore.data.catalogue import Track


def one_label_each(
    tracks: Sequence[Track], entry: Callable[[Track], object]
) -> tuple[list[Track], list[tuple[Path, str]]]:
    """(tracks kept, in order; (path, reason) of those left out); ``entry`` gives a track's content key."""
    groups: dict[object, list[Track]] = defaultdict(list)
    for track in tracks:
        groups[entry(track)].append(track)
    kept: list[Track] = []
    left_out: list[tuple[Path, str]] = []
    for track in tracks:
        group = groups[entry(track)]
        others = ", ".join(str(t.path) for t in group if t is not track)
        labels = sorted({t.label for t in group})
        if len(labels) > 1:
            left_out.append((track.path, f"label conflict: the same recording as {others} (classes {labels})"))
        elif track is group[0]:
            kept.append(track)
        else:
            left_out.append((track.path, f"duplicate: the same recording as {group[0].path}, counted once"))
    return kept, left_out
