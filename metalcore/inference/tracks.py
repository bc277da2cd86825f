"""Whole-track inference: windows over a decoded stream, batched through a classifier, pooled.

The study's predictor looked at the first 5.5 s of a song. Here a track is decoded once, as a
stream, and covered end to end by segment windows of the length the model was trained on; the
windows go through the front-end and the network in batches, and the track's label comes from the
mean of its segments' probabilities, exactly as the training module pools a track's clips for the
track-level validation and test scores. Memory stays bounded by one batch of windows plus one
decoded block, whatever the length of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from metalcore.audio.decode import DecodeError, audible
from metalcore.audio.pcm import to_float
from metalcore.core.errors import UserError
from metalcore.data.catalogue import walk
from metalcore.inference.checkpoint import Classifier
from metalcore.models.weights import check_finite
from metalcore.scoring.pooling import pool_tracks


@dataclass(frozen=True)
class TrackPrediction:
    """One track's timeline (probabilities of every segment with its start) and its pooled label."""

    path: Path
    classes: list[str]
    duration: float  # seconds of decoded audio
    starts: np.ndarray  # (segments,) start of each window in seconds
    segment_seconds: float
    segment_probs: np.ndarray  # (segments, classes)

    @property
    def probs(self) -> np.ndarray:
        """``(classes,)``: the segments' probabilities pooled as the training module pools a track's clips."""
        one_track = np.zeros(len(self.segment_probs), dtype=np.int64)
        return pool_tracks(self.segment_probs, one_track, one_track)[0][0]

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
    buffer, offset = None, 0  # buffer holds frames [offset, offset + len(buffer))
    start, covered, total = 0, 0, 0  # next window's start; end of the last window given; frames read
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block])
        total += len(block)
        while start + length <= total:
            yield start, buffer[start - offset : start + length - offset]
            covered, start = start + length, start + hop
        keep = max(offset, min(start, total - length))  # the next window, or the final one ending at total
        buffer, offset = buffer[keep - offset :], keep
    if buffer is None:
        return
    if total < length:
        padded = np.zeros((length, buffer.shape[1]), dtype=buffer.dtype)
        padded[:total] = buffer
        yield 0, padded
    elif covered < total:
        yield total - length, buffer[total - length - offset :]


@torch.inference_mode()
def predict_track(
    classifier: Classifier,
    path: str | Path,
    hop_seconds: float | None = None,
    batch_size: int = 32,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> TrackPrediction:
    """Decode ``path`` once and score every segment window; raises DecodeError for unusable files.

    ``hop_seconds`` defaults to one segment length (windows side by side). On CUDA the network runs
    under bf16 autocast (the front-end and GRU keep fp32 themselves); elsewhere in fp32.
    ``transform`` changes the whole decoded track (int16 ``(frames, channels)``) before windowing:
    the perturbations of ``evaluate --perturb``; it holds the track in memory.
    """
    path = Path(path)
    length = classifier.segment_samples
    hop = length if hop_seconds is None else round(hop_seconds * classifier.sample_rate)
    if hop < 1:
        raise UserError(f"hop of {hop_seconds} s is shorter than one sample at {classifier.sample_rate} Hz")
    device = classifier.device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batch = torch.empty((batch_size, classifier.channels, length), dtype=torch.int16, pin_memory=device.type == "cuda")
    starts: list[int] = []
    probs: list[torch.Tensor] = []
    frames = 0

    def run(n: int) -> None:
        audio = to_float(batch[:n].to(device, non_blocking=True))
        with autocast:
            probs.append(check_finite(classifier(audio).cpu(), str(path)))

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal frames
        for block in blocks:
            frames += len(block)
            yield block

    blocks: Iterable[np.ndarray] = audible(path, classifier.sample_rate, classifier.channels)
    if transform is not None:
        blocks = [transform(np.concatenate(list(blocks)))]
    filled = 0
    for start, window in windows(counted(blocks), length, hop):
        batch[filled].copy_(torch.from_numpy(window.T))
        starts.append(start)
        filled += 1
        if filled == batch_size:
            run(filled)
            filled = 0
    if filled:
        run(filled)
    return TrackPrediction(
        path=path,
        classes=classifier.classes,
        duration=frames / classifier.sample_rate,
        starts=np.asarray(starts, dtype=np.float64) / classifier.sample_rate,
        segment_seconds=classifier.segment_seconds,
        segment_probs=torch.cat(probs).numpy().astype(np.float64),
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one file: its prediction, or the one-line reason it could not be predicted."""

    path: Path
    prediction: TrackPrediction | None = None
    error: str | None = None


def predict_files(
    classifier: Classifier,
    paths: Sequence[Path],
    hop_seconds: float | None = None,
    batch_size: int = 32,
    progress: bool = True,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Outcome]:
    """``predict_track`` for each file in turn; a file that cannot be decoded gives an ``error``, never stops the rest.

    The progress bar (on stderr, only on a terminal) appears for more than one file.
    """
    with tqdm(paths, unit="track", desc="predicting", disable=None if progress and len(paths) > 1 else True) as bar:
        for path in bar:
            try:
                yield Outcome(Path(path), predict_track(classifier, path, hop_seconds, batch_size, transform))
            except DecodeError as err:
                yield Outcome(Path(path), error=err.reason)


def find_tracks(paths: Sequence[Path]) -> tuple[list[Path], list[Outcome]]:
    """Files as given (whatever their suffix) and the audio files under folders, in order.

    A folder without audio becomes an error row: the user pointed at something that gave nothing.
    """
    files: list[Path] = []
    empty: list[Outcome] = []
    for path in map(Path, paths):
        if path.is_dir():
            found, unreadable = walk(path)
            files += found
            empty += [Outcome(folder, error=reason) for folder, reason in unreadable]
            if not found:
                empty.append(Outcome(path, error="no audio files in this folder"))
        else:
            files.append(path)
    return list(dict.fromkeys(files)), empty
