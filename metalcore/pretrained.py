"""``python -m metalcore.pretrained fetch musicnn``: download, verify and convert pretrained weights now.

Training and every command that needs the weights do the same on first use; this command does it up
front (before going offline, or to fill a shared cache) and prints where each model's weights are
and where they come from. See docs/pretrained.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from metalcore.core.errors import command
from metalcore.models.musicnn import BACKBONES, default_cache_dir, load_musicnn
from metalcore.models.pretrained.musicnn import weights_path


@command()
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metalcore.pretrained", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch, verify and convert a pretrained model family's weights")
    fetch.add_argument("family", choices=["musicnn"])
    fetch.add_argument(
        "--backbone", choices=BACKBONES, action="append", help="only this backbone (repeatable; default: all four)"
    )
    fetch.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="the cache the training config uses (paths.cache_dir; default $METALCORE_CACHE or .cache/metalcore)",
    )
    args = parser.parse_args(argv)
    for backbone in args.backbone or BACKBONES:
        net = load_musicnn(backbone, args.cache_dir)
        parameters = sum(p.numel() for p in net.parameters())
        source = net.source
        print(
            f"{backbone}: {parameters:,} parameters, {weights_path(backbone, args.cache_dir)} "
            f"(from {source['filename']}, sha256 {source['sha256'][:12]}..., licence {source['licence']}; "
            f"trained on {source['trained_on']})"
        )


if __name__ == "__main__":
    main()
