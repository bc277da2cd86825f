"""What the page shows of one track: its timeline, its audio, and the window that most wanted another class.

Everything is reduced before it reaches the page: probabilities to three decimals, the window's
standardised log-Mel to one byte per cell and at most ``MAX_FRAMES`` frames, so a page of 200 tracks
stays a few megabytes of HTML.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import torch

from metalcore.audio.pcm import pcm_to_float
from metalcore.evaluation.occlusion import Occlusion, occlusion
from metalcore.evaluation.page.excerpts import Span, decode_span, span, write_excerpt
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import TrackPrediction

MAX_FRAMES = 240  # columns of the Mel image on the page
MEL_RANGE = 3.0  # standard deviations either side of a band's mean that the image's 256 levels cover


def shown_window(prediction: TrackPrediction, true: int) -> tuple[int, bool]:
    """The window that gives another class than ``true`` its highest probability, and whether it is
    really wrong (its own prediction is not ``true``) or only the closest call of a right track."""
    others = prediction.segment_probs.copy()
    others[:, true] = -1.0
    index = int(others.max(1).argmax())
    return index, int(prediction.segment_probs[index].argmax()) != true


def mel_image(mel: np.ndarray) -> tuple[str, list[int]]:
    """``(n_mels, frames)`` standardised log-Mel -> base64 bytes (low band first, row by row) and its shape."""
    frames = mel.shape[1]
    if frames > MAX_FRAMES:  # average neighbouring frames: the image keeps the whole window
        groups = np.array_split(np.arange(frames), MAX_FRAMES)
        mel = np.stack([mel[:, g].mean(1) for g in groups], 1)
    levels = np.clip((mel + MEL_RANGE) / (2 * MEL_RANGE) * 255, 0, 255).round().astype(np.uint8)
    return base64.b64encode(levels.tobytes()).decode("ascii"), list(levels.shape)


def window_view(found: Occlusion | None, start: float, wrong: bool, classes: list[str], mel: np.ndarray) -> dict:
    """The shown window's start, its probabilities, its Mel image and, when computed, its occlusion map."""
    image, shape = mel_image(mel)
    view = {"start": round(start, 3), "wrong": wrong, "mel": image, "shape": shape}
    if found is not None:
        scale = mel.shape[1]  # patch edges in the image's columns, whatever it was reduced to
        view.update(
            {
                "target": classes[found.target],
                "probs": np.round(found.probs, 3).tolist(),
                "drop": [[float(f"{v:.3g}") for v in row] for row in found.drop],  # a confident model's are tiny
                "bands": found.band_edges.tolist(),
                "frames": (found.frame_edges / scale).round(4).tolist(),
            }
        )
    return view


def track_view(
    classifier: Classifier,
    prediction: TrackPrediction,
    true: int,
    audio_file: Path,
    seconds: float,
    occlude: bool,
) -> dict:
    """The timeline, the excerpt written to ``audio_file`` and the shown window of one predicted track."""
    index, wrong = shown_window(prediction, true)
    start = float(prediction.starts[index])
    segment = prediction.segment_seconds
    part = span(prediction.duration, start + segment / 2, max(seconds, segment))
    audio = decode_span(prediction.path, classifier.sample_rate, classifier.channels, part)
    write_excerpt(audio_file, audio, classifier.sample_rate)
    window = window_audio(audio, part, start, classifier)
    if occlude:
        found = occlusion(classifier, window)
        mel = found.mel
    else:
        found = None
        with torch.inference_mode():
            mel = classifier.frontend(window[None].to(classifier.device))[0].mean(0).float().cpu().numpy()
    return {
        "starts": np.round(prediction.starts, 3).tolist(),
        "probs": np.round(prediction.segment_probs, 3).tolist(),
        "span": [round(part.start, 3), round(part.end, 3)],
        "window": window_view(found, start, wrong, classifier.classes, mel),
    }


def window_audio(audio: np.ndarray, part: Span, start: float, classifier: Classifier) -> torch.Tensor:
    """The scored window ``(channels, samples)`` float, cut from the excerpt; zero-padded as prediction pads."""
    first = round((start - part.start) * classifier.sample_rate)
    piece = audio[first : first + classifier.segment_samples]
    window = np.zeros((audio.shape[1], classifier.segment_samples), dtype=np.float32)
    window[:, : len(piece)] = pcm_to_float(piece)
    return torch.from_numpy(window)
