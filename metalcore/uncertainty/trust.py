"""How far a training run's test scores can be trusted: what metrics.json and the log say about it.

``summary`` puts each test score beside its 95 % interval (a bootstrap over tracks) and fits the
temperature on the validation clips, reporting the test ECE before and after it. It is computed
once, where the run tests (``metalcore.training.experiment``), from the tested model's clips before
any temperature; the run record only writes it.
"""

from __future__ import annotations

from metalcore.uncertainty.bootstrap import (
    LEVEL,
    RESAMPLES,
    SUFFIX,
    formatted,
    track_intervals,
    with_intervals,
)
from metalcore.uncertainty.calibration import calibrate


def summary(results: dict, held_out: dict, seed: int) -> dict:
    """What metrics.json says about the test scores' trust: each score with its 95 % interval, the
    bootstrap's settings, and the temperature fitted on the validation clips with the ECE before and
    after. ``held_out`` maps ``val``/``test`` to their clips ``(probs, labels, track ids)``."""
    test = held_out["test"]
    return {
        "test": with_intervals(results, track_intervals(*test, seed=seed)),
        "bootstrap": {"unit": "track", "resamples": RESAMPLES, "level": LEVEL, "seed": seed},
        "calibration": calibrate(held_out.get("val"), test),
    }


def log_lines(trust: dict) -> list[str]:
    """The train log's closing lines: test scores with intervals, then the calibration."""
    test, calibration = trust["test"], trust["calibration"]
    lines = [
        f"test per {level + ':':<6} "
        + "  ".join(f"{m} {formatted(test[level][m], test[level].get(m + SUFFIX))}" for m in ("acc", "f1"))
        + "  (95% intervals, tracks resampled)"
        for level in ("clip", "track")
    ]
    lines.append(
        f"temperature {calibration['temperature']:.3f} (fitted on {calibration['fitted_on']}): test track ECE "
        f"{calibration['test_track_ece']['before']:.4f} -> {calibration['test_track_ece']['after']:.4f}"
    )
    return lines
