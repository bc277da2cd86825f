"""``python -m metalcore.tags DIR``: does a pretrained tagger already tell the classes of DIR apart?

Runs musicnn (no training) over every track of ``DIR/<class>/`` and writes ``tags.csv`` (each
track's 50 tag probabilities) and ``separating_tags.csv`` (per class, every tag's one-vs-rest
ROC-AUC with a 95 % interval from resampling the tracks, best separating first); prints the best
few per class. The weights are fetched, checked and cached on first use, as for ``model=musicnn``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metalcore.core.errors import UserError, command
from metalcore.core.files import writable_folder, write_csv
from metalcore.evaluation.tracks import labelled_folder
from metalcore.evaluation.zeroshot import separations, tagger, track_tags
from metalcore.inference.checkpoint import best_device
from metalcore.models.transfer import BACKBONES
from metalcore.uncertainty.bootstrap import formatted


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m metalcore.tags", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, metavar="DIR", help="a library laid out as DIR/<class>/<tracks>")
    parser.add_argument("--backbone", default="msd", help="msd (Million Song Dataset tags, default) or mtt")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="tags printed per class (default 5)")
    parser.add_argument("--output-dir", type=Path, metavar="DIR", help="where to write (default: ./tags-<DIR name>)")
    parser.add_argument("--hop", type=float, metavar="SECONDS", help="seconds between 3 s windows (default 3)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="windows per forward pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda...")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("METALCORE_CACHE", ".cache/metalcore")),
        help="where the weights are cached (default: $METALCORE_CACHE or .cache/metalcore, as paths.cache_dir)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap over tracks (default 0)")
    return parser.parse_args(argv)


@command()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hop is not None and not (math.isfinite(args.hop) and args.hop > 0):
        raise UserError(f"--hop {args.hop}: must be a positive number of seconds")
    if args.batch_size < 1 or args.top < 1:
        raise UserError("--batch-size and --top must be at least 1")
    tracks = labelled_folder(args.root)
    output_dir = writable_folder(args.output_dir or Path(f"tags-{args.root.resolve().name}"), "--output-dir")
    device = best_device() if args.device == "auto" else args.device
    model, source = tagger(args.backbone, args.cache_dir, device)
    outcomes = track_tags(model, [path for path, _ in tracks], args.hop, args.batch_size)
    done = [(o, label) for o, (_, label) in zip(outcomes, tracks) if o.prediction is not None]
    for o in outcomes:
        if o.error is not None:
            print(f"skipped {o.path}: {o.error}", file=sys.stderr)
    if not done:
        raise UserError(f"{args.root}: none of the tracks could be decoded")
    probs = np.stack([o.prediction.probs for o, _ in done])
    labels = [label for _, label in done]
    write_csv(
        output_dir / "tags.csv",
        ["path", "class", *model.classes],
        [[o.path, label, *(f"{p:.6f}" for p in o.prediction.probs)] for o, label in done],
    )
    table = separations(probs, labels, model.classes, args.seed)
    write_csv(
        output_dir / "separating_tags.csv",
        ["class", "rank", "tag", "auc", "auc_low", "auc_high", "mean_in_class", "mean_in_others"],
        [
            [r.label, rank, r.tag, *(f"{x:.4f}" for x in (r.auc, *(r.interval or [math.nan] * 2), r.inside, r.outside))]
            for rows in table.values()
            for rank, r in enumerate(rows, 1)
        ],
    )
    print(
        f"musicnn {BACKBONES[args.backbone]} ({source['package']} {source['version']}, {source['licence']}) "
        f"on {len(done)} tracks; AUC of each tag alone for one class against the rest, "
        "95 % intervals from resampling the tracks (below 0.5: the tag is lower for the class)"
    )
    for label, rows in table.items():
        print(f"\n{label} ({labels.count(label)} tracks)")
        for r in rows[: args.top]:
            means = f"mean {r.inside:.3f} in class, {r.outside:.3f} in others"
            print(f"  {r.tag:<20} AUC {formatted(r.auc, r.interval)}  {means}")
    print(f"\nwrote {output_dir}/tags.csv, separating_tags.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
