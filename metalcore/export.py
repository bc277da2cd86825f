"""``python -m metalcore.export CKPT --format onnx|torchscript``: one file that labels raw audio anywhere.

See ``metalcore.inference.export`` for what the file holds and how the front-end is made exportable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metalcore.cli.options import add_checkpoint_argument
from metalcore.core.errors import command
from metalcore.inference.export import FORMATS, export


@command()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metalcore.export",
        description="Export a checkpoint as one file: raw audio in, class probabilities out.",
    )
    add_checkpoint_argument(parser)
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="onnx (default) or torchscript")
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="where to write (default: beside the checkpoint, <name>.onnx or <name>.torchscript.pt)",
    )
    args = parser.parse_args(argv)
    path = export(args.checkpoint, args.format, args.output)
    print(f"wrote {path}: audio (batch, channels, samples) float32 at the model's rate -> probs (batch, classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
