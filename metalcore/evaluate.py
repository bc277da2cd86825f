"""``python -m metalcore.evaluate CKPT``: score a checkpoint on whole tracks and show where it fails.

By default it scores the test split recorded beside the checkpoint (``<run>/split.csv``), so the
numbers concern tracks the model never trained on; ``--data-root`` scores every track of another
folder laid out like the training data (``<root>/<class>/...``). Each track goes through the same
whole-track inference as ``metalcore.predict``: clip-level scores count every segment with its
track's label, track-level scores use the pooled label. It writes ``metrics.json``, a confusion
matrix (``confusion.png``, per track) and ``tracks.csv``: every track with its true label,
prediction and confidence, the worst mistakes first; every score has a 95 % interval (bootstrap
over tracks), and ``reliability.png`` shows calibration before and after the checkpoint's
temperature. ``--perturb`` scores the tracks again under perturbations (``robustness.csv``,
``robustness.png``); ``--embeddings`` writes each track's features for TensorBoard's projector.
Everything lands on one page too, ``report.html``, with each track's timeline, audio (small Opus
files in ``audio/``), its most confidently wrong window and an occlusion map (``--occlusion``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from metalcore.cli.options import add_model_arguments, classifier_from_args
from metalcore.core.errors import UserError, command
from metalcore.core.files import writable_folder
from metalcore.evaluation.evaluate import evaluate
from metalcore.evaluation.page.evaluation import AUDIO, write_page
from metalcore.evaluation.perturb import PERTURBATIONS, chosen
from metalcore.evaluation.robustness import robustness
from metalcore.evaluation.tracks import labelled_folder, run_folder, test_split
from metalcore.uncertainty.bootstrap import formatted


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
        "--perturb",
        nargs="?",
        const="all",
        metavar="NAMES",
        help=f"score the tracks again under perturbations: all (the default) or some of {', '.join(PERTURBATIONS)}",
    )
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="write each track's penultimate features for TensorBoard's projector (<output-dir>/embeddings)",
    )
    parser.add_argument(
        "--occlusion",
        type=int,
        metavar="N",
        help="occlusion maps on report.html for the first N tracks of its table "
        "(default: as many as cost a tenth of the scoring's network passes, at least one)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where to write (default: <run>/evaluation/<checkpoint>-<test|folder name>)",
    )
    return parser.parse_args(argv)


@command()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.occlusion is not None and args.occlusion < 0:
        raise UserError(f"--occlusion {args.occlusion}: must be 0 or more")
    if args.output_dir is not None:
        writable_folder(args.output_dir, "--output-dir")
    if args.data_root is not None:  # read before the checkpoint is loaded: a wrong folder is said at once
        tracks, source = labelled_folder(args.data_root), str(args.data_root)
        name = args.data_root.resolve().name
    classifier = classifier_from_args(args)
    if args.data_root is None:
        tracks, source = test_split(args.checkpoint), f"test split of {run_folder(args.checkpoint)}"
        name = "test"
    output_dir = writable_folder(
        args.output_dir or run_folder(args.checkpoint) / "evaluation" / f"{args.checkpoint.stem}-{name}", "--output-dir"
    )
    names = chosen(args.perturb) if args.perturb else []
    started, cpu = time.perf_counter(), time.process_time()
    metrics, scored = evaluate(
        classifier, tracks, output_dir, args.hop, args.batch_size, source, embeddings=name if args.embeddings else None
    )
    counts = metrics["counts"]
    print(f"95 % intervals from {metrics['bootstrap']['resamples']} bootstrap resamples of the tracks")
    for level in ("clip", "track"):
        m = metrics[level]
        scores = "  ".join(f"{k} {formatted(m[k], m.get(k + '_ci95'))}" for k in ("acc", "f1", "auroc", "pr_auc"))
        print(f"{level:>5}: {scores}  ({counts[level + 's']} {level}s)")
    c = metrics["calibration"]
    print(
        f"calibration: temperature {c['temperature']:.3f}; ECE per track {c['track_ece']['before']:.4f} -> "
        f"{c['track_ece']['after']:.4f}, per clip {c['clip_ece']['before']:.4f} -> {c['clip_ece']['after']:.4f}"
    )
    for failed in metrics["failed"]:
        print(f"skipped {failed['path']}: {failed['error']}", file=sys.stderr)
    written = "metrics.json, confusion.png, reliability.png, tracks.csv" + (", embeddings/" if args.embeddings else "")
    print(f"wrote {output_dir}/{written}")
    rows = None
    if names:
        rows = robustness(classifier, tracks, names, metrics, output_dir, args.hop, args.batch_size)
        print("\nperturbation   track acc [95 %]            drop")
        for r in rows:
            interval = formatted(r["track_acc"], [r["track_acc_low"], r["track_acc_high"]])
            print(f"{r['perturbation']:<14} {interval:<27} {r['track_acc_drop']:+.4f}")
        print(f"wrote {output_dir}/robustness.csv, robustness.png")
    evaluated, evaluated_cpu = time.perf_counter() - started, time.process_time() - cpu
    page = write_page(
        scored,
        metrics,
        output_dir,
        args.data_root,
        robustness=rows,
        embeddings=args.embeddings,
        occluded=args.occlusion,
    )
    spent, spent_cpu = time.perf_counter() - started - evaluated, time.process_time() - cpu - evaluated_cpu
    size = page.stat().st_size + sum(f.stat().st_size for f in (output_dir / AUDIO).iterdir())
    print(
        f"wrote {page} and {AUDIO}/ ({size / 1e6:.1f} MB) in {spent:.1f} s, {spent_cpu:.1f} s of CPU "
        f"(scoring: {evaluated:.1f} s, {evaluated_cpu:.1f} s of CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
