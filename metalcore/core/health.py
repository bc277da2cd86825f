"""What metalcore needs of a machine, checked one piece at a time: what ``python -m metalcore.doctor`` runs.

Each check imports what it examines inside a ``try``, so one broken package (a torchaudio built
against another libtorch, say) is reported with its fix while every other check still runs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from metalcore.core.environment import PAIR, accelerators, cpu_runs_bf16, ffmpeg, source, version

REINSTALL = 'pip install -e ".[dev]" (or the locked set: pip install -r requirements.lock -e .)'
# decoders the catalogue's formats need: wav (PCM), mp3, m4a (AAC), flac, ogg (Vorbis), opus
DECODERS = ("pcm_s16le", "mp3float", "aac", "flac", "vorbis", "libopus|opus")
# below this much free space at the cache a real library's decoded audio will not fit (216 tracks of
# 4 min at 44.1 kHz stereo int16 take about 9 GB)
LOW_DISK_BYTES = 10 * 2**30


@dataclass(frozen=True)
class Check:
    """One line of the report. ``status``: ok, warn (works, but worth knowing) or fail (needed, broken)."""

    name: str
    status: str
    detail: str
    fix: str = ""


def root_cause(err: BaseException) -> str:
    """The innermost error's last line: torchaudio wraps the loader's "undefined symbol" in its own OSError."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


def declared() -> list:
    """metalcore's own requirements (not its extras'), as ``packaging`` Requirements; empty when not installed."""
    from packaging.requirements import Requirement

    try:
        texts = importlib.metadata.requires("metalcore") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    reqs = [Requirement(text) for text in texts]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def requirements() -> Iterator[Check]:
    """Every dependency metalcore declares is installed at a version its pin allows."""
    reqs = declared()
    if not reqs:
        yield Check("metalcore", "fail", "not installed in this environment", f"fix: {REINSTALL}")
        return
    wrong = 0
    for req in reqs:
        installed = version(req.name)
        if installed is None or not req.specifier.contains(installed, prereleases=True):
            wrong += 1
            found = f"{installed} installed" if installed else "not installed"
            yield Check(req.name, "fail", f"{found}, metalcore needs {req}", f"fix: pip install '{req}'")
    if not wrong:
        yield Check("requirements", "ok", f"all {len(reqs)} dependencies at versions metalcore allows")


def torch_pair() -> Iterator[Check]:
    """torch imports, and torchaudio's compiled extension loads beside it and computes a Mel-spectrogram."""
    pins = " ".join(str(r) for r in declared() if r.name in PAIR)
    try:
        import torch
    except (ImportError, OSError) as err:
        yield Check("torch", "fail", f"does not import ({root_cause(err)})", f"fix: {REINSTALL}")
        return
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    yield Check("torch", "ok", f"{torch.__version__} imports ({build})")
    try:
        import torchaudio

        torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, n_mels=64)(torch.zeros(1, 4096))
    except Exception as err:  # OSError (undefined symbol), ImportError, RuntimeError: all mean the pair is broken
        yield Check(
            "torchaudio",
            "fail",
            f"{version('torchaudio')}: its compiled extension does not load beside torch {version('torch')} "
            f"({root_cause(err)})",
            f"fix: install the pair metalcore pins ({pins}): {REINSTALL}",
        )
        return
    yield Check("torchaudio", "ok", f"{torchaudio.__version__}: extension loads beside torch, MelSpectrogram runs")


def libraries() -> Iterator[Check]:
    """The training stack imports (each on its own, so one failure names its package)."""
    for module, dist in (
        ("lightning", "lightning"),
        ("hydra", "hydra-core"),
        ("omegaconf", "omegaconf"),
        ("torchmetrics", "torchmetrics"),
        ("tensorboard", "tensorboard"),
        ("numpy", "numpy"),
    ):
        try:
            importlib.import_module(module)
        except Exception as err:
            yield Check(dist, "fail", f"does not import ({root_cause(err)})", f"fix: {REINSTALL}")
        else:
            yield Check(dist, "ok", f"{version(dist)} imports")


def decoding() -> Iterator[Check]:
    """PyAV imports and its FFmpeg has a decoder for every format the catalogue accepts."""
    try:
        import av
    except (ImportError, OSError) as err:
        yield Check("av", "fail", f"PyAV does not import ({root_cause(err)})", "fix: pip install av")
        return

    def has(name: str) -> bool:
        try:
            av.codec.Codec(name, "r")
        except Exception:
            return False
        return True

    missing = [names for names in DECODERS if not any(has(n) for n in names.split("|"))]
    if missing:
        yield Check(
            "av", "fail", f"PyAV {av.__version__}: its FFmpeg lacks {', '.join(missing)}", "fix: pip install av"
        )
    else:
        yield Check("av", "ok", f"PyAV {av.__version__}, FFmpeg libavcodec {ffmpeg()}: wav, mp3, m4a, flac, ogg, opus")


def hardware() -> Iterator[Check]:
    """What mixed precision the defaults will choose, and which accelerators torch sees."""
    try:
        bf16 = cpu_runs_bf16()
    except (ImportError, OSError):
        return  # torch itself is broken: already reported
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    precision = "native (CPU training defaults to bf16-mixed)" if bf16 else "not native (CPU training runs fp32)"
    yield Check("cpu", "ok", f"{platform.machine()}, {cores} cores; bf16 {precision}")
    found = accelerators()
    if found:
        yield Check(
            "cuda", "ok", f"{', '.join(found['gpus'])}; CUDA {found['cuda']}, cuDNN {found['cudnn']} (bf16/16-mixed)"
        )
    else:
        import torch

        mps = torch.backends.mps.is_available()
        yield Check("accelerator", "ok", "Apple MPS" if mps else "none visible: training and inference run on the CPU")


def cache(folder: Path) -> Iterator[Check]:
    """The decoded-audio cache can be written, with room for a real library."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        yield Check(
            "cache",
            "fail",
            f"{folder}: {existing} is not writable",
            "fix: set paths.cache_dir=<a writable folder> (or METALCORE_CACHE)",
        )
        return
    free = shutil.disk_usage(existing).free
    status = "warn" if free < LOW_DISK_BYTES else "ok"
    fix = "a library of a few hundred tracks needs about 9 GB at 44.1 kHz stereo" if status == "warn" else ""
    yield Check("cache", status, f"{folder}: {free / 2**30:.1f} GiB free", fix)


def checkout() -> Iterator[Check]:
    found = source()
    if found["commit"]:
        state = "with uncommitted changes" if found["dirty"] else "clean"
        yield Check("metalcore", "ok", f"{version('metalcore')} at commit {found['commit'][:12]} ({state})")
    else:
        yield Check("metalcore", "ok", f"{version('metalcore')} (not a git checkout: runs record no commit)")


def run_all(cache_dir: Path) -> list[Check]:
    """Every check, in the order a broken install is best read: versions, imports, hardware, disk."""
    python = (
        Check("python", "ok", platform.python_version())
        if sys.version_info >= (3, 10)
        else Check(
            "python", "fail", f"{platform.python_version()}: metalcore needs 3.10 or newer", "fix: a newer Python"
        )
    )
    sections: list[Callable[[], Iterator[Check]]] = [checkout, requirements, torch_pair, libraries, decoding, hardware]
    return [python, *(c for section in sections for c in section()), *cache(cache_dir)]
