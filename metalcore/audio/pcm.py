"""int16 samples and float audio: one scale wherever samples change type.

The cache stores int16; training, predict, evaluate's perturbations and the benchmark's study
pipeline read the samples as float by dividing by ``FULL_SCALE``: -32768 becomes -1.0 exactly and
32767 just below 1.0. A model scaled by 1/32767 in one place and 1/32768 in another would see
slightly louder audio at predict time than in training. No torch at import: decoding workers use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FULL_SCALE = 32768.0  # 2 ** 15: int16's magnitude range


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 ``(frames, channels)`` -> float32 ``(channels, frames)`` in [-1, 1)."""
    return np.ascontiguousarray(pcm.T, dtype=np.float32) / np.float32(FULL_SCALE)


def float_to_pcm(audio: np.ndarray) -> np.ndarray:
    """float ``(channels, frames)`` -> int16 ``(frames, channels)``: clipped to int16's range, rounded."""
    clipped = np.clip(audio, -1.0, (FULL_SCALE - 1) / FULL_SCALE)
    return np.ascontiguousarray((clipped * FULL_SCALE).round().astype(np.int16).T)


def to_float(audio: torch.Tensor) -> torch.Tensor:
    """int16 samples (as the cache stores them and batches carry them) -> float32 in [-1, 1), on their
    device; float passes through. Batches stay int16 until they reach the device: half the bytes."""
    import torch

    return audio.float().mul_(1.0 / FULL_SCALE) if audio.dtype == torch.int16 else audio
