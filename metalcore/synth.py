"""``python -m metalcore.synth OUT_DIR``: write the synthetic demo set (see ``metalcore.data.demo``)."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from metalcore.core.errors import UserError, command
from metalcore.core.files import make_folder
from metalcore.data.demo import write_demo_set


@command()
def main(argv: list[str] | None = None) -> None:
    """Command line: write a demo set into OUT_DIR and print one summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m metalcore.synth", description="Write the synthetic Metal/Hardcore demo set."
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--tracks-per-class", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args(argv)
    if args.tracks_per_class < 1:
        raise UserError(f"--tracks-per-class {args.tracks_per_class}: must be at least 1")
    if not (math.isfinite(args.seconds) and 0.5 <= args.seconds <= 3600):
        raise UserError(f"--seconds {args.seconds}: must be from 0.5 to 3600")
    if not 8000 <= args.sample_rate <= 192000:
        raise UserError(f"--sample-rate {args.sample_rate}: must be from 8000 to 192000 Hz")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed {args.seed}: must be from 0 to {2**32 - 1}")
    make_folder(args.out_dir, "OUT_DIR")
    began = time.perf_counter()
    files = write_demo_set(args.out_dir, args.tracks_per_class, args.seconds, args.seed, args.sample_rate)
    print(
        f"wrote {len(files)} files ({args.tracks_per_class} per genre, {args.seconds:g} s each) "
        f"to {args.out_dir} in {time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
