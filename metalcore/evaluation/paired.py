"""Does configuration A really beat B? Paired comparisons on the same test tracks.

Two configurations trained with the same seed on the same split (or fold) were tested on the same
tracks, so their track predictions can be paired: the difference in track accuracy gets a bootstrap
interval that resamples tracks (a track tested under several seeds moves with all its pairs), and
the exact McNemar test asks whether the tracks only one of them gets right lean one way more than
chance allows. A difference counts as real at 95 % when both agree: the interval excludes 0 and
McNemar's p is below 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metalcore.uncertainty.bootstrap import LEVEL, RESAMPLES


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: tracks only A got right, only B got right.

    Under the null each discordant pair falls either way with probability 1/2, so the p-value is
    twice the binomial tail of the smaller count, capped at 1; no discordant pair gives 1.
    """
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Comparison:
    """A against B on ``pairs`` paired track predictions (``tracks`` distinct tracks)."""

    pairs: int
    tracks: int
    difference: float  # accuracy of A minus accuracy of B
    interval: list[float] | None
    only_a: int  # pairs A got right and B wrong
    only_b: int
    p_value: float

    @property
    def real(self) -> bool:
        """Significant at 95 %: the interval excludes 0 and McNemar rejects equality."""
        excludes_zero = self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)
        return excludes_zero and self.p_value < 1 - LEVEL


def compare(
    correct_a: np.ndarray, correct_b: np.ndarray, tracks: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> Comparison:
    """Pairs ``(correct_a[i], correct_b[i])`` of one track ``tracks[i]``; bootstrap over distinct tracks."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    ids, inverse = np.unique(tracks, return_inverse=True)
    n = len(ids)
    delta = correct_a.astype(float) - correct_b
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)[:, inverse]
    replicates = (counts * delta).sum(1) / counts.sum(1)
    tail = 100 * (1 - LEVEL) / 2
    interval = [float(x) for x in np.percentile(replicates, [tail, 100 - tail])] if n > 1 else None
    return Comparison(
        pairs=len(delta),
        tracks=n,
        difference=float(delta.mean()),
        interval=interval,
        only_a=int((correct_a & ~correct_b).sum()),
        only_b=int((~correct_a & correct_b).sum()),
        p_value=mcnemar_exact(int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())),
    )
