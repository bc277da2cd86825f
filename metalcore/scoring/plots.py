"""Figures that runs log and reports save: confusion matrices and spectrogram images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

# Figures are built without pyplot, so importing metalcore never switches a notebook's backend.


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """Counts with row-normalised shading: rows are true classes, columns predictions."""
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(classes)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(int(count)), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def spectrogram_image(spec: np.ndarray) -> np.ndarray:
    """A ``(n_mels, frames)`` array scaled to [0, 1] with low frequencies at the bottom (HW layout)."""
    spec = np.flipud(np.asarray(spec, dtype=np.float32))
    low, high = np.percentile(spec, [1, 99])
    return np.clip((spec - low) / max(high - low, 1e-6), 0, 1)
