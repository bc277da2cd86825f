"""musicnn's trained weights: from the PyPI wheel to a PyTorch state dict in the cache, once.

The wheel ``musicnn-0.1.0`` (ISC licence, Pons & Serra, MTG-UPF) ships TensorFlow-1 checkpoints of
every model. They are read with ``bundle.read_bundle`` (no TensorFlow), renamed to the PyTorch
port's parameters (``metalcore.models.musicnn``), and saved as
``<cache_dir>/pretrained/musicnn-0.1.0/<backbone>.v<FORMAT>.pt`` with a record of their source; later
loads read that file and need neither the wheel nor the network.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file
from metalcore.models.pretrained.bundle import BundleError, read_bundle
from metalcore.models.pretrained.wheel import Wheel, fetch_wheel, pretrained_folder

MUSICNN_WHEEL = Wheel(
    package="musicnn",
    version="0.1.0",
    filename="musicnn-0.1.0-py3-none-any.whl",
    sha256="f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
    licence="ISC",
    url="https://pypi.org/project/musicnn/0.1.0/",
)
TRAINED_ON = {
    "MSD": "Million Song Dataset audio with its Last.fm tags",
    "MTT": "MagnaTagATune audio (Magnatune recordings under a non-commercial licence: "
    "check it before any commercial use of MTT models)",
}
FORMAT = 1  # of the converted file: raise it whenever the port's parameter names change

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _tf_layers(backbone: str) -> dict[str, str]:
    """TensorFlow layer scope -> the port's module, in the order ``musicnn/models.py`` creates them."""
    if backbone.endswith("_vgg"):
        layers = {"batch_normalization": "input_bn", "dense": "output"}
        for i in range(5):
            layers[f"{i + 1}CNN"] = f"convs.{i}"
            layers[f"batch_normalization_{i + 1}"] = f"bns.{i}"
        return layers
    blocks = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)]
    blocks += [f"midend.{i}" for i in range(3)]
    layers = {"batch_normalization": "input_bn"}
    for i, block in enumerate(blocks):
        layers["conv2d" + (f"_{i}" if i else "")] = f"{block}.conv"
        layers[f"batch_normalization_{i + 1}"] = f"{block}.bn"
    layers.update(batch_normalization_9="pooled_bn", dense="dense", batch_normalization_10="dense_bn", dense_1="output")
    return layers


def _to_torch(module: str, kind: str, value: np.ndarray) -> tuple[str, torch.Tensor]:
    """One TF variable as the port's parameter: kernels from TF's (..., in, out) to PyTorch's (out, in, ...)."""
    tensor = torch.from_numpy(value)
    if kind in _BN:
        return f"{module}.{_BN[kind]}", tensor
    if kind == "bias":
        return f"{module}.bias", tensor
    if value.ndim == 2:  # dense: (in, out)
        return f"{module}.weight", tensor.T.contiguous()
    if module.startswith("midend."):  # a (7, features, 1, 64) 2-D kernel that spans all features: a 1-D conv
        return f"{module}.weight", tensor[:, :, 0, :].permute(2, 1, 0).contiguous()
    return f"{module}.weight", tensor.permute(3, 2, 0, 1).contiguous()  # (kh, kw, in, out) -> (out, in, kh, kw)


def convert(backbone: str, variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A checkpoint's variables (optimiser slots left out) -> the port's state dict for ``backbone``."""
    layers, state = _tf_layers(backbone), {}
    for name, value in variables.items():
        scope, kind = name.split("/")
        if scope not in layers:
            raise BundleError(f"{backbone}: unexpected variable {name}")
        key, tensor = _to_torch(layers[scope], kind, value)
        state[key] = tensor
        if kind == "moving_mean":
            state[f"{layers[scope]}.num_batches_tracked"] = torch.tensor(0)
    return state


def _trained(name: str) -> bool:
    """A model variable, not an optimiser slot (``.../Adam``, ``beta1_power``)."""
    return re.fullmatch(r"[^/]+/(kernel|bias|gamma|beta|moving_mean|moving_variance)", name) is not None


def source_record(backbone: str) -> dict[str, str]:
    """What every model and checkpoint made from these weights says about them."""
    return {**MUSICNN_WHEEL.record(), "model": backbone, "trained_on": TRAINED_ON[backbone[:3]]}


def weights_path(backbone: str, cache_dir: str | Path) -> Path:
    """Where the converted weights of ``backbone`` are cached."""
    folder = pretrained_folder(cache_dir) / f"{MUSICNN_WHEEL.package}-{MUSICNN_WHEEL.version}"
    return folder / f"{backbone}.v{FORMAT}.pt"


def musicnn_weights(backbone: str, cache_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(state_dict, source)`` of a backbone: from the cache, or fetched, verified and converted first."""
    path = weights_path(backbone, cache_dir)
    if not path.is_file():
        wheel = fetch_wheel(MUSICNN_WHEEL, cache_dir)
        try:
            with zipfile.ZipFile(wheel) as zf:
                index = zf.read(f"musicnn/{backbone}/.index")
                data = zf.read(f"musicnn/{backbone}/.data-00000-of-00001")
            state = convert(backbone, read_bundle(index, data, _trained))
        except (BundleError, KeyError, zipfile.BadZipFile) as err:
            raise UserError(
                f"{wheel}: cannot read the {backbone} checkpoint ({err}); delete the file and fetch again"
            ) from None
        with atomic_file(path) as f:
            torch.save({"state_dict": state, "source": source_record(backbone)}, f)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved["state_dict"], saved["source"]
    except (RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:  # cut short or not ours
        raise UserError(
            f"{path}: not readable converted weights ({type(err).__name__}); delete it to convert again"
        ) from None
