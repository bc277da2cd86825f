"""Export a classifier as one file that labels raw audio anywhere (ONNX or TorchScript).

The artefact takes raw audio ``(batch, channels, samples)`` as float32 in [-1, 1) at the model's
sample rate and returns class probabilities ``(batch, classes)``: the Mel front-end is inside, so
a consumer needs no torchaudio and no metalcore, only a segment of audio. It is the checkpoint's
``Classifier`` in eval mode (no SpecAugment, no dropout, BatchNorm running statistics). Class
names, sample rate, channels and segment length travel inside the file as metadata
(ONNX ``metadata_props``, each value JSON; the ``metalcore.json`` extra file in TorchScript).

TorchScript traces the classifier as it is. ONNX cannot carry complex tensors, so for ONNX two
parts of the front-end are swapped for equivalents that export: the power spectrogram is computed
with the real-valued STFT (ONNX's ``STFT`` operator, opset 17) after the same reflect padding
``center=True`` does, and the per-band standardisation is written out from the BatchNorm's running
statistics. Outputs match the Lightning model to float rounding; ``tests/test_export.py`` checks it.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file, writable_file
from metalcore.inference.checkpoint import Classifier
from metalcore.models.frontend import PowerSpectrogram
from metalcore.models.weights import check_finite

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
NAMES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".torchscript")}  # what --output may end in
ONNX_OPSET = 17  # the first opset with an STFT operator


def metadata(classifier: Classifier) -> dict:
    """What a consumer needs to feed the artefact and read its output."""
    return {
        "classes": classifier.classes,
        "sample_rate": classifier.sample_rate,
        "channels": classifier.channels,
        "segment_seconds": classifier.segment_seconds,
        "temperature": classifier.temperature,
        "input": "audio: float32 (batch, channels, samples) in [-1, 1)",
        "output": "probs: float32 (batch, classes)",
    }


class RealPowerSpectrogram(nn.Module):
    """``(..., samples)`` -> ``(..., n_fft // 2 + 1, frames)``: the front-end's centred power spectrogram
    computed with the real-valued STFT, which ONNX exports (the complex one does not)."""

    def __init__(self, spectrogram: PowerSpectrogram) -> None:
        super().__init__()
        self.n_fft, self.hop_length = spectrogram.n_fft, spectrogram.hop_length
        self.register_buffer("window", spectrogram.window.clone())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        shape = audio.shape
        x = F.pad(audio.reshape(-1, 1, shape[-1]), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        with warnings.catch_warnings():  # return_complex=False is deprecated, and the only form ONNX takes
            warnings.simplefilter("ignore", UserWarning)
            z = torch.stft(
                x[:, 0], self.n_fft, self.hop_length, window=self.window, center=False, return_complex=False
            )  # (B * C, freqs, frames, 2): real, imaginary
        power = z.pow(2).sum(-1)
        return power.reshape(shape[:-1] + power.shape[-2:])


class FrozenStandardise(nn.Module):
    """A BatchNorm without affine terms in eval mode, written out: ``(B, M, ...)`` -> ``(B, M, ...)``."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.register_buffer("mean", norm.running_mean.detach().clone()[:, None, None])
        self.register_buffer("scale", (norm.running_var.detach() + norm.eps).rsqrt()[:, None, None])

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return (spec - self.mean) * self.scale


def onnx_ready(classifier: Classifier) -> Classifier:
    """A copy whose front-end uses only operators the ONNX exporter knows; same outputs.

    Every ``PowerSpectrogram`` of the front-end (``MelFrontend``'s, musicnn's) becomes the real-valued
    STFT, and a standardisation (``MelFrontend.norm``) its frozen arithmetic.
    """
    ready = copy.deepcopy(classifier).cpu()
    frontend = ready.frontend
    stfts = [name for name, module in frontend.named_modules() if isinstance(module, PowerSpectrogram)]
    if not stfts:
        raise UserError(f"export knows front-ends built on metalcore's PowerSpectrogram, not {type(frontend).__name__}")
    for name in stfts:
        parent, _, attribute = name.rpartition(".")
        owner = frontend.get_submodule(parent)
        setattr(owner, attribute, RealPowerSpectrogram(getattr(owner, attribute)))
    norm = getattr(frontend, "norm", None)
    if isinstance(norm, nn.BatchNorm2d):
        if norm.affine or not norm.track_running_stats:
            raise UserError("export expects the front-end's standardisation without affine terms, with running stats")
        frontend.norm = FrozenStandardise(norm)
    return ready.eval()


def example_input(classifier: Classifier, batch: int = 2) -> torch.Tensor:
    """One batch of quiet noise the length of a segment: what the exporters trace with."""
    generator = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(batch, classifier.channels, classifier.segment_samples, generator=generator)


def export_onnx(classifier: Classifier, path: Path) -> Path:
    """ONNX with dynamic batch and length, through the TorchScript-based exporter (no onnxscript needed)."""
    try:
        import onnx
    except ImportError:
        raise UserError(
            "ONNX export needs the onnx package: pip install -e '.[export]' "
            "(or --format torchscript, which needs nothing more)"
        ) from None
    model, buffer = onnx_ready(classifier), io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example_input(classifier),),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["audio"],
            output_names=["probs"],
            dynamic_axes={"audio": {0: "batch", 2: "samples"}, "probs": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(classifier).items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    with atomic_file(path) as f:
        f.write(proto.SerializeToString())
    return path


def export_torchscript(classifier: Classifier, path: Path) -> Path:
    """The classifier traced on the CPU, with the metadata as ``metalcore.json``."""
    model = copy.deepcopy(classifier).cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example_input(classifier),), check_trace=False)
    with atomic_file(path) as f:
        torch.jit.save(traced, f, _extra_files={"metalcore.json": json.dumps(metadata(classifier))})
    return path


def export(checkpoint: Path, fmt: str, output: Path | None = None) -> Path:
    """Write ``checkpoint`` as ``fmt`` beside it (or at ``output``); returns the file written.

    The output's name must end as the format's files do, so that nothing reads an ONNX graph as text.
    """
    output = output or checkpoint.with_name(checkpoint.stem + FORMATS[fmt])
    writable_file(output, "--output")
    if not output.name.lower().endswith(NAMES[fmt]):
        raise UserError(f"--output {output}: a {fmt} file must end in {' or '.join(NAMES[fmt])}")
    classifier = Classifier.from_checkpoint(checkpoint, "cpu")
    with torch.no_grad():
        check_finite(classifier(example_input(classifier)), str(checkpoint))
    return (export_onnx if fmt == "onnx" else export_torchscript)(classifier, output)
