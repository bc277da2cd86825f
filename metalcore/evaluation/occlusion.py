"""What drove a decision: how much the predicted class's probability drops when each Mel patch is masked.

A classifier can score well for the wrong reasons (Sturm 2013-2014): a hum, a fade, the mastering of
one album. Occlusion asks the model itself: the window goes through the checkpoint's own front-end
once, then each time-frequency patch is set to 0 in turn and the network scores it again. The
front-end standardises every Mel band with its running statistics, so 0 is the band's average level
over the training clips: a masked patch says "nothing unusual here". A large drop marks a patch the
decision leaned on; a negative one, a patch that argued for another class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metalcore.inference.checkpoint import Classifier

GRID = (8, 6)  # patches along the Mel bands and along time: one network pass each


@dataclass(frozen=True)
class Occlusion:
    """A window's front-end output and its occlusion map."""

    mel: np.ndarray  # (n_mels, frames): the front-end's standardised log-Mel, averaged over channels
    probs: np.ndarray  # (classes,): the window's calibrated probabilities
    target: int  # the class whose probability the map follows (the window's prediction)
    drop: np.ndarray  # (band patches, time patches): target's probability minus that with the patch masked
    band_edges: np.ndarray  # (band patches + 1,): first Mel band of each patch, then n_mels
    frame_edges: np.ndarray  # (time patches + 1,): first frame of each patch, then frames


def edges(size: int, parts: int) -> np.ndarray:
    """``parts + 1`` boundaries splitting ``size`` into near-equal patches (fewer when ``size`` is smaller)."""
    return np.unique(np.linspace(0, size, min(parts, size) + 1).round().astype(int))


@torch.inference_mode()
def occlusion(classifier: Classifier, audio: torch.Tensor, grid: tuple[int, int] = GRID) -> Occlusion:
    """Occlusion map of one window ``audio`` ``(channels, samples)`` float in [-1, 1) for its predicted class.

    All masked copies go through the network in one batch.
    """
    mel = classifier.frontend(audio[None].to(classifier.device).float())  # (1, C, M, F)
    probs = classifier.from_mel(mel, torch.float64)[0]
    target = int(probs.argmax())
    bands, frames = edges(mel.shape[-2], grid[0]), edges(mel.shape[-1], grid[1])
    patches = [(b, f) for b in range(len(bands) - 1) for f in range(len(frames) - 1)]
    masked = mel.repeat(len(patches), 1, 1, 1)  # (patches, C, M, F)
    for i, (b, f) in enumerate(patches):
        masked[i, :, bands[b] : bands[b + 1], frames[f] : frames[f + 1]] = 0.0
    occluded = classifier.from_mel(masked, torch.float64)[:, target]
    drop = (probs[target] - occluded).reshape(len(bands) - 1, len(frames) - 1)
    return Occlusion(
        mel=mel[0].mean(0).float().cpu().numpy(),
        probs=probs.cpu().numpy(),
        target=target,
        drop=drop.cpu().numpy(),
        band_edges=bands,
        frame_edges=frames,
    )
