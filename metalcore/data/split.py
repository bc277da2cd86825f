"""Track-, artist- or album-level train/val/test split or k-fold cross-validation, stratified, seeded.

The study split clips at random, so clips of one song sat in both train and test. Here whole groups
(a track, every track of an artist, or of an album) go to one split, and each class is spread over
the splits in the requested fractions, or over K folds that each serve once as the test split.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metalcore.core.errors import UserError

SPLITS = ("train", "val", "test")
GROUPINGS = ("track", "artist", "album")


@dataclass(frozen=True)
class Split:
    """How tracks are grouped so that no group is in two splits, and which share is held out for test.

    ``group_by``: ``track`` (copies of one file are one group), ``artist`` or ``album``. With
    ``folds=K`` the groups are dealt into K stratified folds once per seed; fold ``fold`` is the
    test split (``data.test_fraction`` is then unused), and the validation split is drawn from the
    other folds, ``data.val_fraction`` of all tracks. Sweeping ``fold`` over ``0..K-1`` tests
    every track exactly once.
    """

    group_by: str = "track"
    folds: int | None = None
    fold: int = 0

    def __post_init__(self) -> None:
        if self.group_by not in GROUPINGS:
            raise UserError(f"data.split.group_by={self.group_by!r} is not one of {GROUPINGS}")
        if self.folds is not None and (self.folds < 2 or not 0 <= self.fold < self.folds):
            raise UserError(
                f"data.split.folds={self.folds} data.split.fold={self.fold}: folds must be at least 2 "
                f"and fold one of 0..folds-1"
            )

    def groups(
        self, artists: Sequence[str], contents: Sequence[str] | None = None, albums: Sequence[str] | None = None
    ) -> list:
        """The group key of each track: its content, its artist (case and spaces ignored) or its album.

        A track without an album (no tag, no album folder: ``albums[i]`` empty) is its own group.
        """
        contents = list(contents) if contents is not None else list(range(len(artists)))
        if self.group_by == "artist":
            return [artist_key(a) for a in artists]
        if self.group_by == "album":
            if albums is None:
                raise ValueError("grouping by album needs the albums")
            return [("album", a) if a else ("track", c) for a, c in zip(albums, contents)]
        return contents

    def assign(
        self,
        labels: Sequence[str],
        artists: Sequence[str],
        val_fraction: float,
        test_fraction: float,
        seed: int,
        contents: Sequence[str] | None = None,
        albums: Sequence[str] | None = None,
    ) -> np.ndarray:
        """One of ``train``/``val``/``test`` per track, in the order given.

        ``contents`` identifies each file's audio (the cache key): copies of one song, say in an
        album folder and on a compilation, form one group so they cannot straddle two splits.
        Groups are shuffled with ``seed`` and placed, largest first, in the split (or fold) whose
        quota for the group's class is furthest from full; a split left without some class is an error.
        """
        check_fractions(val_fraction, test_fraction)
        members: dict = defaultdict(list)
        for index, group in enumerate(self.groups(artists, contents, albums)):
            members[group].append(index)
        order = list(members)
        np.random.default_rng(seed).shuffle(order)
        order.sort(key=lambda g: -len(members[g]))  # stable: ties keep the seeded order

        if self.folds is None:
            shares = {"test": test_fraction, "val": val_fraction, "train": 1 - val_fraction - test_fraction}
            placed = deal(order, members, labels, shares)
        else:
            folds = deal(order, members, labels, {k: 1 / self.folds for k in range(self.folds)})
            rest = [g for g in order if folds[g] != self.fold]
            val_share = val_fraction * self.folds / (self.folds - 1)
            if val_share >= 1:
                raise UserError(
                    f"data.val_fraction={val_fraction} leaves nothing to train on beside a test fold of "
                    f"1/{self.folds}; lower it"
                )
            placed = {g: "test" for g in order if folds[g] == self.fold}
            placed.update(deal(rest, members, labels, {"val": val_share, "train": 1 - val_share}))
        result = np.empty(len(labels), dtype=object)
        for group, split in placed.items():
            result[members[group]] = split
        self._check_complete(labels, result, Counter(labels), val_fraction, test_fraction)
        return result.astype(str)

    def _check_complete(self, labels, result, totals, val_fraction, test_fraction) -> None:
        keys = {
            "val": f"data.val_fraction={val_fraction}",
            "test": f"data.test_fraction={test_fraction}"
            if self.folds is None
            else f"data.split.folds={self.folds} (fold {self.fold})",
            "train": "the train split",
        }
        present = {(label, split) for label, split in zip(labels, result)}
        advice = "" if self.group_by == "track" else ", or split by track (data.split.group_by=track)"
        for label in sorted(totals):
            if totals[label] < len(SPLITS):  # no fraction can help: say what is missing
                raise UserError(
                    f"class '{label}' has {totals[label]} track{'s' if totals[label] != 1 else ''}; each class "
                    f"needs at least {len(SPLITS)}, one for each of the train, val and test splits: add tracks"
                )
            for split in SPLITS:
                if (label, split) not in present:
                    raise UserError(
                        f"{keys[split]} leaves the {split} split without any '{label}' track "
                        f"(class '{label}' has {totals[label]} tracks, grouped by {self.group_by}); "
                        f"add tracks or change the fractions{advice}"
                    )


def deal(order: list, members: dict, labels: Sequence[str], shares: dict) -> dict:
    """Each group (in ``order``) to the share whose quota for the group's class is furthest from full.

    Quotas count tracks: ``max(1, tracks of the class * share)``, so every share gets each class
    when there are enough tracks; a group counts as its most common class; ties go to the share
    named first.
    """
    totals = Counter(labels[i] for group in order for i in members[group])
    quota = {(c, s): max(1.0, n * share) for c, n in totals.items() for s, share in shares.items()}
    filled: Counter = Counter()
    placed = {}
    for group in order:
        label = Counter(labels[i] for i in members[group]).most_common(1)[0][0]
        target = max(shares, key=lambda s: quota[label, s] - filled[label, s])
        filled[label, target] += len(members[group])
        placed[group] = target
    return placed


def artist_key(name: str) -> str:
    """An artist's name as the split compares it: case and spacing ignored ("Band " is "band")."""
    return " ".join(name.split()).casefold()


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both held-out fractions must be positive and leave tracks to train on."""
    for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise UserError(f"{key}={value} must be between 0 and 1 (exclusive)")
    if val_fraction + test_fraction >= 1:
        raise UserError(
            f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} "
            f"leave nothing to train on; their sum must be below 1"
        )
