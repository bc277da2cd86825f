"""``python -m metalcore.doctor``: can this machine run metalcore, and if not, why not and what to do.

Prints the versions that matter, whether torchaudio's compiled extension loads beside the installed
torch, whether bf16 is native on this CPU, which accelerators torch sees and the free disk at the
cache. Exits 1 when something metalcore needs is broken, each with its fix on the line below.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from metalcore.core.errors import command
from metalcore.core.health import run_all

MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@command()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalcore.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("METALCORE_CACHE", ".cache/metalcore")),
        help="the decoded-audio cache to check (default: $METALCORE_CACHE or .cache/metalcore, as paths.cache_dir)",
    )
    args = parser.parse_args(argv)
    checks = run_all(args.cache_dir)
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{MARK[check.status]}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != "ok":
            print(f"      {'':<{width}}  {check.fix}")
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        print(f"\nmetalcore cannot run here: {', '.join(dict.fromkeys(failed))} broken (fixes above)")
        return 1
    print("\nmetalcore can run here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
