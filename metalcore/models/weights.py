"""A checkpoint's weights checked before use: the digest recorded when they were saved, and finiteness.

A few kilobytes of a checkpoint overwritten (a bad disk block, a copy cut and patched) can still
unpickle: the network then answers NaN for every track, or confident nonsense, and a resume goes on
from a damaged optimiser state. Training records a SHA-256 of every tensor of each checkpoint
(``DIGEST``); whoever loads one recomputes it, and also
refuses NaN or infinite weights and a temperature that is not a finite positive number, with one
line naming what is wrong. Checkpoints written before the digest existed are checked for
finiteness only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from metalcore.core.errors import UserError

DIGEST = "weights_sha256"  # the checkpoint key the digest is stored under


def digest(checkpoint: Mapping[str, Any]) -> str:
    """SHA-256 over every tensor in ``checkpoint`` (weights, optimiser state, metric states): each one's
    place in the nesting, dtype, shape and bytes, in a fixed order; the stored digest itself left out."""
    h = hashlib.sha256()
    for place, tensor in _tensors({k: v for k, v in checkpoint.items() if k != DIGEST}, ""):
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{place}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def _tensors(value: Any, place: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield place, value
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _tensors(value[key], f"{place}/{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{place}/{i}")


def record_digest(checkpoint: dict[str, Any]) -> None:
    """Store the digest of the checkpoint's tensors in it (called last as it is saved)."""
    checkpoint[DIGEST] = digest(checkpoint)


def check_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> None:
    """UserError unless the tensors match their recorded digest and the weights are all finite."""
    recorded = checkpoint.get(DIGEST)
    if recorded is not None and digest(checkpoint) != recorded:
        raise UserError(
            f"{path}: corrupted: its content differs from the checksum recorded when it was saved "
            "(the file was damaged after training); use another checkpoint of the run or train again"
        )
    for name, tensor in checkpoint["state_dict"].items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{path}: the weight {name} holds NaN or infinite values; the model cannot be used")


def check_temperature(temperature: Any, path: Path) -> float:
    """The fitted temperature as a float; UserError unless it is a finite number above 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(
            f"{path}: its calibration temperature is {temperature!r}; it must be a finite number above 0 "
            "(0 or NaN gives NaN probabilities, a negative one inverts the labels)"
        )
    return value


def check_finite(probs: torch.Tensor, what: str) -> torch.Tensor:
    """``probs`` unchanged; UserError when any is NaN or infinite, so no command writes NaN as an answer."""
    if not torch.isfinite(probs).all():
        raise UserError(f"{what}: the model gave NaN or infinite probabilities; its checkpoint cannot be used")
    return probs
