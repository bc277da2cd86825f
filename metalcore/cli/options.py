"""Command-line options shared by the commands that run a checkpoint, and their checks."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from metalcore.core.errors import UserError
from metalcore.core.memory import most_that_fit
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
    classifier = Classifier.from_checkpoint(args.checkpoint, None if args.device == "auto" else args.device)
    check_batch_fits(args.batch_size, classifier)
    return classifier


def check_batch_fits(batch_size: int, classifier: Classifier) -> None:
    """Refuse a batch of windows that memory cannot hold, before any track is decoded.

    A batch is held as int16 and copied as float32 for the front-end: 6 bytes a sample.
    """
    samples = classifier.channels * classifier.segment_samples
    most, available = most_that_fit(6 * samples)
    if batch_size > most:
        raise UserError(
            f"--batch-size {batch_size}: a batch of {batch_size} segments of {classifier.segment_seconds:g} s needs "
            f"about {batch_size * 6 * samples / 2**30:.0f} GiB, more than half of the {available:.1f} GiB of memory "
            f"available; use at most {most} (32 is usual)"
        )
