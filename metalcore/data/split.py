"""Track-level (or artist-level) train/val/test split, stratified by class and fixed by a seed.

The study split clips at random, so clips of one song sat in both train and test. Here whole groups
(a track, or every track of an artist) go to one split, and each class is spread over the splits in
the requested fractions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metalcore.core.errors import UserError

SPLITS = ("train", "val", "test")
GROUPINGS = ("track", "artist")


@dataclass(frozen=True)
class Split:
    """How tracks are grouped so that no group is in two splits: ``track`` or ``artist``."""

    group_by: str = "track"

    def __post_init__(self) -> None:
        if self.group_by not in GROUPINGS:
            raise UserError(f"data.split.group_by={self.group_by!r} is not one of {GROUPINGS}")

    def assign(
        self,
        labels: Sequence[str],
        artists: Sequence[str],
        val_fraction: float,
        test_fraction: float,
        seed: int,
        contents: Sequence[str] | None = None,
    ) -> np.ndarray:
        """One of ``train``/``val``/``test`` per track, in the order given.

        ``contents`` identifies each file's audio (the cache key): copies of one song, say in an
        album folder and on a compilation, form one group so they cannot straddle two splits.
        Artist names are compared case- and space-insensitively ("Band " is "band").
        Groups are shuffled with ``seed`` and placed, largest first, in the split whose quota for the
        group's class is furthest from full; a split left without some class is an error.
        """
        check_fractions(val_fraction, test_fraction)
        if self.group_by == "artist":
            groups = [artist_key(a) for a in artists]
        else:
            groups = list(contents) if contents is not None else list(range(len(labels)))
        members: dict = defaultdict(list)
        for index, group in enumerate(groups):
            members[group].append(index)
        order = list(members)
        np.random.default_rng(seed).shuffle(order)
        order.sort(key=lambda g: -len(members[g]))  # stable: ties keep the seeded order

        totals = Counter(labels)
        fractions = {"val": val_fraction, "test": test_fraction, "train": 1 - val_fraction - test_fraction}
        quota = {(c, s): max(1.0, n * fractions[s]) for c, n in totals.items() for s in SPLITS}
        filled: Counter = Counter()
        result = np.empty(len(labels), dtype=object)
        for group in order:
            label = Counter(labels[i] for i in members[group]).most_common(1)[0][0]
            target = max(("test", "val", "train"), key=lambda s: quota[label, s] - filled[label, s])
            filled[label, target] += len(members[group])
            result[members[group]] = target
        self._check_complete(labels, result, totals, val_fraction, test_fraction)
        return result.astype(str)

    def _check_complete(self, labels, result, totals, val_fraction, test_fraction) -> None:
        keys = {
            "val": f"data.val_fraction={val_fraction}",
            "test": f"data.test_fraction={test_fraction}",
            "train": "the train split",
        }
        present = {(label, split) for label, split in zip(labels, result)}
        advice = "" if self.group_by == "track" else ", or split by track (data.split.group_by=track)"
        for label in sorted(totals):
            for split in SPLITS:
                if (label, split) not in present:
                    raise UserError(
                        f"{keys[split]} leaves the {split} split without any '{label}' track "
                        f"(class '{label}' has {totals[label]} tracks, grouped by {self.group_by}); "
                        f"add tracks or change the fractions{advice}"
                    )


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
