"""The machine a benchmark ran on, named in its first line so every figure carries it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import av


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load() -> str:
    """The 1-minute load average against the cores: other jobs on a shared machine skew every figure."""
    try:
        return f"load average {os.getloadavg()[0]:.2f} on {cores()} cores"
    except OSError:
        return "load average unknown"


def machine() -> str:
    """CPU model, cores, accelerator and the versions that set the speed."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    import torch

    gpu = f"; {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    codec = ".".join(map(str, av.library_versions["libavcodec"]))
    return (
        f"{model}, {cores()} cores{gpu}, {platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, PyAV {av.__version__} (libavcodec {codec})"
    )
