"""A classifier rebuilt from a checkpoint alone: the piece that predict, evaluate and export share.

A checkpoint carries everything needed to rebuild the classifier (``hyper_parameters.spec``, a
``ModelSpec``: class names, sample rate, channels, segment length, front-end and network configs),
so inference needs no Hydra config and no data folder; the network it rebuilds must keep the
``Network`` contract. It is read with ``torch.load(weights_only=True)``, and the
configs may only name ``metalcore`` modules, so opening a checkpoint never runs foreign code.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch
from torch import nn

from metalcore.core.environment import pair_changed
from metalcore.core.errors import UserError
from metalcore.models.base import Network, check_network
from metalcore.models.frontend import Frontend
from metalcore.models.spec import ModelSpec
from metalcore.models.weights import check_checkpoint, check_temperature

log = logging.getLogger(__name__)
CHECKPOINT_HELP = "pass a .ckpt file that python -m metalcore.train wrote in <run>/checkpoints/"
# front-end settings of older checkpoints that moved to training augmentation (conf/augment): not needed here
MOVED_TO_AUGMENT = ("freq_mask", "time_mask", "num_masks")


def best_device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _build(config: dict, what: str, path: Path, kind: type[nn.Module]) -> nn.Module:
    """Instantiate a ``_target_`` config recorded in a checkpoint, which must build a ``kind``."""
    config = dict(config)
    target = config.pop("_target_")  # a metalcore class: ModelSpec refuses any other
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise UserError(
            f"{path}: the checkpoint's {what} {target} does not exist in this version of metalcore ({err})"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise UserError(f"{path}: the checkpoint's {what} {target} is not a {kind.__module__}.{kind.__qualname__}")
    try:
        return cls(**config)
    except TypeError as err:  # settings renamed or removed since the checkpoint was written
        raise UserError(
            f"{path}: the checkpoint's {what} settings do not fit {target} in this version of metalcore ({err})"
        ) from None


class Classifier(nn.Module):
    """Raw audio ``(batch, channels, samples)`` at ``sample_rate`` -> class probabilities ``(batch, classes)``.

    The front-end and network of a trained ``GenreClassifier`` under the same attribute names, so
    its checkpoint's ``state_dict`` loads as is; always in eval mode (no SpecAugment, no dropout,
    BatchNorm running statistics).
    """

    def __init__(
        self,
        frontend: nn.Module,
        net: nn.Module,
        classes: list[str],
        sample_rate: int,
        channels: int,
        segment_seconds: float,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.frontend, self.net = frontend, net
        self.temperature = float(temperature)  # fitted after training (metalcore.uncertainty.calibration)
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
        """``(batch, channels, samples)`` float in [-1, 1) -> probabilities ``(batch, classes)`` in fp32,
        calibrated: the logits are divided by the checkpoint's temperature."""
        return self.from_mel(self.frontend(audio))

    def from_mel(self, mel: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The front-end's output ``(batch, channels, n_mels, frames)`` -> calibrated probabilities
        ``(batch, classes)`` in ``dtype``: what an occlusion map changes and looks at again (in float64,
        where a confident model's probabilities move by less than float32 resolves)."""
        return (self.net(mel).to(dtype) / self.temperature).softmax(-1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Rebuild from a Lightning checkpoint of ``python -m metalcore.train``; UserError if it is not one."""
        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob("*.ckpt")) or sorted(path.glob("checkpoints/*.ckpt"))
            hint = f"e.g. {found[0]}" if found else CHECKPOINT_HELP
            raise UserError(f"{path}: is a folder, not a checkpoint; give a .ckpt file ({hint})")
        if not path.is_file():
            raise UserError(f"{path}: checkpoint not found; {CHECKPOINT_HELP}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            lines = str(err).strip().splitlines() or [""]
            # a weights-only refusal names the object on a later line ("Unsupported global: GLOBAL x.Y was ...")
            unsupported = next((line.strip() for line in lines if "Unsupported global" in line), None)
            reason = unsupported.split(" was not")[0] if unsupported else f"{type(err).__name__}: {lines[0]}"
            raise UserError(
                f"{path}: not a readable metalcore checkpoint ({reason[:200]}); {CHECKPOINT_HELP}"
            ) from None
        hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
        raw = hparams.get("spec") if isinstance(hparams, dict) else None
        if raw is None or not isinstance(checkpoint.get("state_dict"), dict):
            raise UserError(f"{path}: not a metalcore checkpoint (it holds no model spec); {CHECKPOINT_HELP}")
        try:
            spec = ModelSpec.from_dict(raw)
        except ValueError as err:
            raise UserError(f"{path}: not a metalcore checkpoint ({err}); {CHECKPOINT_HELP}") from None
        check_checkpoint(checkpoint, path)
        changed = pair_changed(spec.environment)
        if changed:  # the front-end's compiled code may round differently: say so, then load as usual
            log.warning("%s: %s", path, changed)
        features = {k: v for k, v in spec.features.items() if k not in MOVED_TO_AUGMENT}
        frontend = _build(features, "front-end", path, Frontend)
        net = _build(spec.model, "model", path, Network)
        try:
            check_network(net, len(spec.classes), spec.channels, frontend.n_mels, frontend.frames(spec.segment_samples))
        except ValueError as err:
            raise UserError(f"{path}: the checkpoint's model ({spec.model['_target_']}) {err}") from None
        classifier = cls(
            frontend,
            net,
            classes=spec.classes,
            sample_rate=spec.sample_rate,
            channels=spec.channels,
            segment_seconds=spec.segment_seconds,
            temperature=check_temperature((checkpoint.get("calibration") or {}).get("temperature", 1.0), path),
        )
        try:
            classifier.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as err:
            raise UserError(
                f"{path}: the weights do not fit the model the checkpoint describes ({str(err).splitlines()[0]})"
            ) from None
        classifier.checkpoint = path
        if "calibration" not in checkpoint:
            uncalibrated(path)
        try:
            return classifier.to(torch.device(device) if device else best_device())
        except (RuntimeError, AssertionError) as err:  # an unknown device, or CUDA absent
            raise UserError(f"device {device!r} cannot be used here: {str(err).splitlines()[0]}") from None


def uncalibrated(path: Path) -> None:
    """Say that a checkpoint without a fitted temperature gives the network's own confidences.

    A run stores its temperature in the checkpoint it tested (the best, ``epochNNN.ckpt``), fitted to
    that model's logits; ``last.ckpt`` and checkpoints of older runs have none.
    """
    tested = [p.name for p in sorted(path.parent.glob("epoch*.ckpt")) if p != path and _calibrated(p)]
    hint = f"; the run's tested checkpoint has one: {', '.join(tested)}" if tested else ""
    log.warning("%s: no fitted temperature, so confidences are not calibrated%s", path, hint)


def _calibrated(path: Path) -> bool:
    try:
        return "calibration" in torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: not a checkpoint to point to
        return False
