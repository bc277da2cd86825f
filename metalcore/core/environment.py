"""The software and hardware a run used: recorded in metrics.json and in every checkpoint, and what
``python -m metalcore.doctor`` reports.

Versions are read from the installed distributions' metadata, not by importing them, so the record
can still be made (and doctor can still explain) when a package such as torchaudio fails to load.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

# the key each version is recorded under -> its distribution on the package index
DISTRIBUTIONS = {
    "torch": "torch",
    "torchaudio": "torchaudio",
    "lightning": "lightning",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "torchmetrics": "torchmetrics",
    "numpy": "numpy",
    "av": "av",
    "metalcore": "metalcore",
}
# what a checkpoint's numbers depend on most: the pair whose compiled code computes the front-end
PAIR = ("torch", "torchaudio")
# what the runs of one comparison must share: the software that computes their numbers
SOFTWARE = ("python", *DISTRIBUTIONS, "libavcodec", "cuda", "cudnn", "commit", "dirty")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def ffmpeg() -> str | None:
    """The libavcodec that PyAV carries (it decodes every compressed format), or None without PyAV."""
    try:
        import av
    except ImportError:
        return None
    return ".".join(map(str, av.library_versions["libavcodec"]))


def cpu_runs_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), which oneDNN's convolutions use."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def accelerators() -> dict[str, Any]:
    """CUDA and cuDNN versions and the visible GPUs, where torch sees any; empty on a CPU-only machine."""
    try:
        import torch
    except (ImportError, OSError):
        return {}
    if not torch.cuda.is_available():
        return {}
    return {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def source(root: Path = PACKAGE_ROOT) -> dict[str, Any]:
    """The git commit metalcore ran from and whether its tree had uncommitted changes (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit.strip() if commit else None, "dirty": bool(status.strip()) if status is not None else None}


def environment() -> dict[str, Any]:
    """Everything a run's numbers may depend on besides its config and data, as plain JSON values."""
    return {
        "python": platform.python_version(),
        **{key: version(dist) for key, dist in DISTRIBUTIONS.items()},
        "libavcodec": ffmpeg(),
        **accelerators(),
        **source(),
    }


def pair(env: dict[str, Any]) -> str:
    """``torch 2.11.0 + torchaudio 2.11.0``."""
    return " + ".join(f"{key} {env.get(key)}" for key in PAIR)


def pair_changed(recorded: dict[str, Any] | None, current: dict[str, Any] | None = None) -> str | None:
    """One sentence when a checkpoint was made under another torch/torchaudio pair than this one
    (``current``: the installed pair unless given), else None.

    Old checkpoints recorded no environment: nothing is claimed about them.
    """
    current = current or {key: version(DISTRIBUTIONS[key]) for key in PAIR}
    if not recorded or all(recorded.get(key) == current.get(key) for key in PAIR):
        return None
    return f"made under {pair(recorded)}, running under {pair(current)}: its outputs may differ slightly"


def spread(records: dict[str, dict[str, Any]]) -> list[str]:
    """For runs meant to be compared, one line per setting that differs between them.

    ``records`` maps a run's name to its recorded environment; a run without a record is left out.
    """
    lines = []
    for key in SOFTWARE:
        groups: dict[str, list[str]] = {}
        for name, env in records.items():
            groups.setdefault(str(env.get(key, "not recorded")), []).append(name)
        if len(groups) > 1:
            parts = [
                f"{value} ({len(names)}: {', '.join(names[:3])}{', ...' * (len(names) > 3)})"
                for value, names in groups.items()
            ]
            lines.append(f"{key}: {'; '.join(parts)}")
    return lines
