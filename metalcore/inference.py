"""Whole-track inference from a checkpoint alone: the piece that predict, evaluate and export share.

The study's predictor looked at the first 5.5 s of a song. Here a track is decoded once, as a
stream, and covered end to end by segment windows of the length the model was trained on; the
windows go through the front-end and the network in batches, and the track's label comes from the
mean of its segments' probabilities, exactly as the training module pools a track's clips for the
track-level validation and test scores. Memory stays bounded by one batch of windows plus one
decoded block, whatever the length of the file.

A checkpoint carries everything needed to rebuild the classifier (``hyper_parameters.spec``: class
names, sample rate, channels, segment length, front-end and network configs), so inference needs
no Hydra config and no data folder. It is read with ``torch.load(weights_only=True)``, and the
configs may only name ``metalcore`` modules, so opening a checkpoint never runs foreign code.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from metalcore.audio.decode import DecodeError, audible
from metalcore.errors import UserError

CHECKPOINT_HELP = "pass a .ckpt file that python -m metalcore.train wrote in <run>/checkpoints/"


def best_device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _build(config: dict, what: str, path: Path) -> nn.Module:
    """Instantiate a ``_target_`` config recorded in a checkpoint; only metalcore modules qualify."""
    config = dict(config)
    target = str(config.pop("_target_", ""))
    module_name, _, class_name = target.rpartition(".")
    if not module_name.startswith("metalcore."):
        raise UserError(f"{path}: the checkpoint's {what} is {target or 'missing'}, not a metalcore module; "
                        f"{CHECKPOINT_HELP}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise UserError(f"{path}: the checkpoint's {what} {target} does not exist in this version of "
                        f"metalcore ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserError(f"{path}: the checkpoint's {what} {target} is not a network module")
    try:
        return cls(**config)
    except TypeError as err:  # settings renamed or removed since the checkpoint was written
        raise UserError(f"{path}: the checkpoint's {what} settings do not fit {target} in this version of "
                        f"metalcore ({err})") from None


class Classifier(nn.Module):
    """Raw audio ``(batch, channels, samples)`` at ``sample_rate`` -> class probabilities ``(batch, classes)``.

    The front-end and network of a trained ``GenreClassifier`` under the same attribute names, so
    its checkpoint's ``state_dict`` loads as is; always in eval mode (no SpecAugment, no dropout,
    BatchNorm running statistics).
    """

    def __init__(self, frontend: nn.Module, net: nn.Module, classes: list[str], sample_rate: int,
                 channels: int, segment_seconds: float) -> None:
        super().__init__()
        self.frontend, self.net = frontend, net
        self.classes = list(classes)
        self.sample_rate, self.channels, self.segment_seconds = int(sample_rate), int(channels), float(segment_seconds)
        self.segment_samples = round(self.segment_seconds * self.sample_rate)
        self.checkpoint: Path | None = None  # the file it was loaded from
        self.eval()

    def train(self, mode: bool = True) -> Classifier:
        return super().train(False)  # inference only: training mode would add SpecAugment and dropout

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, samples)`` float in [-1, 1) -> probabilities ``(batch, classes)`` in fp32."""
        return self.net(self.frontend(audio)).float().softmax(-1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Rebuild from a Lightning checkpoint of ``python -m metalcore.train``; UserError if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: checkpoint not found; {CHECKPOINT_HELP}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any file can be passed, and torch.load fails in many ways
            lines = str(err).strip().splitlines() or [""]
            # a weights-only refusal names the object on a later line ("Unsupported global: GLOBAL x.Y was ...")
            unsupported = next((line.strip() for line in lines if "Unsupported global" in line), None)
            reason = unsupported.split(" was not")[0] if unsupported else f"{type(err).__name__}: {lines[0]}"
            raise UserError(f"{path}: not a readable metalcore checkpoint ({reason[:200]}); {CHECKPOINT_HELP}") from None
        hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
        spec = hparams.get("spec") if isinstance(hparams, dict) else None
        if not isinstance(spec, dict) or not {"classes", "data", "features", "model"} <= set(spec) \
                or not isinstance(checkpoint.get("state_dict"), dict):
            raise UserError(f"{path}: not a metalcore checkpoint (it holds no model spec); {CHECKPOINT_HELP}")
        data = spec["data"]
        classifier = cls(_build(spec["features"], "front-end", path), _build(spec["model"], "model", path),
                         classes=spec["classes"], sample_rate=data["sample_rate"], channels=data["channels"],
                         segment_seconds=data["segment_seconds"])
        try:
            classifier.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as err:
            raise UserError(f"{path}: the weights do not fit the model the checkpoint describes "
                            f"({str(err).splitlines()[0]})") from None
        classifier.checkpoint = path
        try:
            return classifier.to(torch.device(device) if device else best_device())
        except (RuntimeError, AssertionError) as err:  # an unknown device, or CUDA absent
            raise UserError(f"device {device!r} cannot be used here: {str(err).splitlines()[0]}") from None


@dataclass(frozen=True)
class TrackPrediction:
    """One track's timeline (probabilities of every segment with its start) and its pooled label."""

    path: Path
    classes: list[str]
    duration: float          # seconds of decoded audio
    starts: np.ndarray       # (segments,) start of each window in seconds
    segment_seconds: float
    segment_probs: np.ndarray  # (segments, classes)

    @property
    def probs(self) -> np.ndarray:
        """``(classes,)``: the mean of the segments' probabilities, as the training module pools a track."""
        return self.segment_probs.mean(0)

    @property
    def label(self) -> str:
        return self.classes[int(self.probs.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probs.max())


def windows(blocks: Iterable[np.ndarray], length: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of ``(frames, channels)`` blocks into ``(start, window (length, channels))`` pairs.

    Windows start every ``hop`` frames while they fit; when the last one stops short of the end, one
    more window ends exactly at the end, so the whole track is covered without padding. A stream
    shorter than ``length`` gives one window at 0, zero-padded. Only the frames that later windows
    still need are kept. A yielded window is valid until the next one is asked for.
    """
    if length < 1 or hop < 1:
        raise ValueError(f"window length ({length}) and hop ({hop}) must be positive")
    buffer, offset = None, 0           # buffer holds frames [offset, offset + len(buffer))
    start, covered, total = 0, 0, 0    # next window's start; end of the last window given; frames read
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block])
        total += len(block)
        while start + length <= total:
            yield start, buffer[start - offset:start + length - offset]
            covered, start = start + length, start + hop
        keep = max(offset, min(start, total - length))  # the next window, or the final one ending at total
        buffer, offset = buffer[keep - offset:], keep
    if buffer is None:
        return
    if total < length:
        padded = np.zeros((length, buffer.shape[1]), dtype=buffer.dtype)
        padded[:total] = buffer
        yield 0, padded
    elif covered < total:
        yield total - length, buffer[total - length - offset:]


@torch.inference_mode()
def predict_track(classifier: Classifier, path: str | Path, hop_seconds: float | None = None,
                  batch_size: int = 32) -> TrackPrediction:
    """Decode ``path`` once and score every segment window; raises DecodeError for unusable files.

    ``hop_seconds`` defaults to one segment length (windows side by side). On CUDA the network runs
    under bf16 autocast (the front-end and GRU keep fp32 themselves); elsewhere in fp32.
    """
    path = Path(path)
    length = classifier.segment_samples
    hop = length if hop_seconds is None else round(hop_seconds * classifier.sample_rate)
    if hop < 1:
        raise UserError(f"hop of {hop_seconds} s is shorter than one sample at {classifier.sample_rate} Hz")
    device = classifier.device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batch = torch.empty((batch_size, classifier.channels, length), dtype=torch.int16,
                        pin_memory=device.type == "cuda")
    starts: list[int] = []
    probs: list[torch.Tensor] = []
    frames = 0

    def run(n: int) -> None:
        audio = batch[:n].to(device, non_blocking=True).float().mul_(1.0 / 32768.0)
        with autocast:
            probs.append(classifier(audio).cpu())

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal frames
        for block in blocks:
            frames += len(block)
            yield block

    filled = 0
    for start, window in windows(counted(audible(path, classifier.sample_rate, classifier.channels)), length, hop):
        batch[filled].copy_(torch.from_numpy(window.T))
        starts.append(start)
        filled += 1
        if filled == batch_size:
            run(filled)
            filled = 0
    if filled:
        run(filled)
    return TrackPrediction(path=path, classes=classifier.classes, duration=frames / classifier.sample_rate,
                           starts=np.asarray(starts, dtype=np.float64) / classifier.sample_rate,
                           segment_seconds=classifier.segment_seconds,
                           segment_probs=torch.cat(probs).numpy().astype(np.float64))


@dataclass(frozen=True)
class Outcome:
    """What became of one file: its prediction, or the one-line reason it could not be predicted."""

    path: Path
    prediction: TrackPrediction | None = None
    error: str | None = None


def predict_files(classifier: Classifier, paths: Sequence[Path], hop_seconds: float | None = None,
                  batch_size: int = 32, progress: bool = True) -> Iterator[Outcome]:
    """``predict_track`` for each file in turn; a file that cannot be decoded gives an ``error``, never stops the rest.

    The progress bar (on stderr, only on a terminal) appears for more than one file.
    """
    with tqdm(paths, unit="track", desc="predicting", disable=None if progress and len(paths) > 1 else True) as bar:
        for path in bar:
            try:
                yield Outcome(Path(path), predict_track(classifier, path, hop_seconds, batch_size))
            except DecodeError as err:
                yield Outcome(Path(path), error=err.reason)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every command that runs a checkpoint over tracks takes (predict, evaluate)."""
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a .ckpt from a run's checkpoints/ folder")
    parser.add_argument("--hop", type=float, metavar="SECONDS",
                        help="seconds between segment starts (default: one segment length, no overlap)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="segments per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps...")


def classifier_from_args(args: argparse.Namespace) -> Classifier:
    """The checkpoint named by ``add_model_arguments``' options, after checking them (UserError)."""
    if args.hop is not None and args.hop <= 0:
        raise UserError(f"--hop {args.hop}: must be a positive number of seconds")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    return Classifier.from_checkpoint(args.checkpoint, None if args.device == "auto" else args.device)
