"""Command-line options shared by the commands that run a checkpoint, and their checks."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from metalcore.core.errors import UserError
from metalcore.inference.checkpoint import Classifier


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """The checkpoint every model command starts from."""
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="a .ckpt from a run's checkpoints/ folder")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every command that runs a checkpoint over tracks takes (predict, evaluate)."""
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--hop",
        type=float,
        metavar="SECONDS",
        help="seconds between segment starts (default: one segment length, no overlap)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="segments per forward pass (default 32)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps...")


def classifier_from_args(args: argparse.Namespace) -> Classifier:
    """The checkpoint named by ``add_model_arguments``' options, after checking them (UserError)."""
    if args.hop is not None and not (math.isfinite(args.hop) and args.hop > 0):
        raise UserError(f"--hop {args.hop}: must be a positive number of seconds")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    return Classifier.from_checkpoint(args.checkpoint, None if args.device == "auto" else args.device)
