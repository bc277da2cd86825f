"""``python -m metalcore.evaluate CKPT``: score a checkpoint on whole tracks and show where it fails.

By default it scores the test split recorded beside the checkpoint (``<run>/split.csv``), so the
numbers concern tracks the model never trained on; ``--data-root`` scores every track of another
folder laid out like the training data (``<root>/<class>/...``). Each track goes through the same
whole-track inference as ``metalcore.predict``: clip-level scores count every segment with its
track's label, track-level scores use the pooled label. It writes ``metrics.json``, a confusion
matrix (``confusion.png``, per track) and ``tracks.csv``: every track with its true label,
prediction and confidence, the worst mistakes first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metalcore.cli.options import add_model_arguments, classifier_from_args, one_line_errors
from metalcore.core.files import writable_folder
from metalcore.evaluation.tracks import evaluate, labelled_folder, run_folder, test_split


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m metalcore.evaluate",
        description="Score a checkpoint on whole tracks: metrics.json, "
        "confusion.png and tracks.csv (worst mistakes first).",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="evaluate every track of DIR/<class>/ instead of the run's test split",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where to write (default: <run>/evaluation/<checkpoint>-<test|folder name>)",
    )
    return parser.parse_args(argv)


def shown(value: float | None) -> str:
    """A score, or ``n/a`` where the tracks given do not define it (e.g. AUROC on one class)."""
    return "n/a" if value is None else f"{value:.4f}"


@one_line_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.output_dir is not None:
        writable_folder(args.output_dir, "--output-dir")
    classifier = classifier_from_args(args)
    if args.data_root is not None:
        tracks, source = labelled_folder(args.data_root), str(args.data_root)
        name = args.data_root.resolve().name
    else:
        tracks, source = test_split(args.checkpoint), f"test split of {run_folder(args.checkpoint)}"
        name = "test"
    output_dir = writable_folder(
        args.output_dir or run_folder(args.checkpoint) / "evaluation" / f"{args.checkpoint.stem}-{name}", "--output-dir"
    )
    metrics = evaluate(classifier, tracks, output_dir, args.hop, args.batch_size, source)
    counts = metrics["counts"]
    for level in ("clip", "track"):
        m = metrics[level]
        print(
            f"{level:>5}: acc {shown(m['acc'])}  f1 {shown(m['f1'])}  auroc {shown(m['auroc'])}  "
            f"({counts[level + 's']} {level}s)"
        )
    for failed in metrics["failed"]:
        print(f"skipped {failed['path']}: {failed['error']}", file=sys.stderr)
    print(f"wrote {output_dir}/metrics.json, confusion.png, tracks.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
