"""musicnn (Pons & Serra 2019) in PyTorch: its front-end, its four released networks, their weights.

``load_musicnn("MSD_musicnn", cache_dir)`` returns the trained network in eval mode, its weights
fetched from the ``musicnn`` 0.1.0 wheel, verified and converted on first use
(``metalcore.models.pretrained``). ``MusicnnFrontend`` turns 16 kHz audio into its input.
"""

from __future__ import annotations

import os
from pathlib import Path

from metalcore.models.musicnn.frontend import PATCH_FRAMES, MusicnnFrontend
from metalcore.models.musicnn.labels import MSD_TAGS, MTT_TAGS, tags_of
from metalcore.models.musicnn.network import (
    BACKBONES,
    Musicnn,
    MusicnnVGG,
    Tagger,
    TaggerOutput,
    build_tagger,
)
from metalcore.models.pretrained.musicnn import musicnn_weights

__all__ = [
    "BACKBONES",
    "MSD_TAGS",
    "MTT_TAGS",
    "PATCH_FRAMES",
    "Musicnn",
    "MusicnnFrontend",
    "MusicnnVGG",
    "Tagger",
    "TaggerOutput",
    "build_tagger",
    "load_musicnn",
    "tags_of",
]


def default_cache_dir() -> Path:
    """The cache the training config uses by default: ``$METALCORE_CACHE`` or ``.cache/metalcore``."""
    return Path(os.environ.get("METALCORE_CACHE", ".cache/metalcore"))


def load_musicnn(backbone: str = "MSD_musicnn", cache_dir: str | Path | None = None) -> Tagger:
    """The trained ``backbone`` (one of ``BACKBONES``) in eval mode; ``.source`` says where its weights came from.

    ``cache_dir`` defaults to ``default_cache_dir()``; raises UserError (one line) when the weights
    cannot be fetched.
    """
    net = build_tagger(backbone)
    state, source = musicnn_weights(backbone, default_cache_dir() if cache_dir is None else cache_dir)
    net.load_state_dict(state)
    net.source = source
    return net.eval()
