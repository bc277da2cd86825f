"""python -m metalcore.bench --quick: the README's benchmark runs and prints every figure it promises."""

from __future__ import annotations

import re

from conftest import run_module


def test_quick_benchmark_prints_build_and_loader_figures():
    result = run_module("metalcore.bench", "--quick", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^metalcore benchmark on .+, \d+ cores", out, re.M)
    assert "cache build from cold" in out and "target per core" in out
    for fmt in ("mp3", "flac"):  # per core and total, each in x realtime, with the verdict on the 150x target
        assert re.search(rf"^{fmt}\s+\d+x in [\d.]+ s\s+\d+x in [\d.]+ s\s+>= 150x (met|MISSED)$", out, re.M), fmt
    for path in (
        "naive: decode whole file + CPU Mel per clip",
        "cache: memory-mapped int16 slices",
        "cache + CPU Mel per batch",
    ):
        for workers in (0, 2):
            assert re.search(rf"^{re.escape(path)}\s+{workers}\s+[\d.]+\s+[\d.]+x", out, re.M), (path, workers)
    assert len(re.findall(r">= 20x (met|MISSED)$", out, re.M)) == 2
