"""How much memory a setting may take: the one measure behind every "too large for memory" refusal."""

from __future__ import annotations

import os

SHARE = 0.5  # what one structure may take: the model, batches and the page cache need the rest


def available_memory() -> int:
    """Bytes the kernel can give without swapping (MemAvailable), else all physical memory."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def most_that_fit(bytes_each: float) -> tuple[int, float]:
    """(how many items of ``bytes_each`` fit in ``SHARE`` of the memory available, that memory in GiB)."""
    available = available_memory()
    return int(SHARE * available / max(bytes_each, 1)), available / 2**30
