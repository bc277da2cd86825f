"""``python -m metalcore.predict CKPT PATH...``: label whole tracks with a trained checkpoint.

Files and folders (searched recursively) are decoded once each and covered end to end by segments
(``metalcore.inference``); each track gets the label with the highest mean probability. The table
goes to stdout; ``--output`` writes it as CSV or JSON, and ``--segments`` adds every segment's
probabilities with its start time: the track's timeline. A file that cannot be used (missing,
empty, not audio, corrupt, silent) gets a row with the reason and the others go on; the exit
status is 1 only when no track could be predicted, and 2 for a missing or foreign checkpoint or a
bad option.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metalcore.cli.options import add_model_arguments, classifier_from_args
from metalcore.core.errors import UserError, command
from metalcore.core.files import writable_file
from metalcore.inference.outputs import OUTPUT_SUFFIXES, print_table, segments_path, track_record, write_output
from metalcore.inference.tracks import find_tracks, predict_files


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m metalcore.predict", description="Label whole tracks with a trained checkpoint."
    )
    add_model_arguments(parser)
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="audio files or folders (searched recursively)"
    )
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the table as .csv or .json")
    parser.add_argument(
        "--segments",
        action="store_true",
        help="add every segment's probabilities and start time (a timeline of each track)",
    )
    return parser.parse_args(argv)


@command()
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.output is not None:  # before any work: a bad path must not cost the whole prediction
        writable_file(args.output, "--output")
        if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UserError(f"--output {args.output}: write a .csv or a .json file")
        if args.segments and args.output.suffix.lower() == ".csv":  # the timeline goes in a second file
            writable_file(segments_path(args.output), "--output")
    classifier = classifier_from_args(args)
    files, empty = find_tracks(args.paths)
    outcomes = [*predict_files(classifier, files, args.hop, args.batch_size), *empty]
    records = [track_record(o, classifier.classes, args.segments) for o in outcomes]
    print_table(records, classifier.classes)
    for outcome in outcomes:
        if outcome.prediction and outcome.prediction.duration < classifier.segment_seconds:
            print(
                f"note: {outcome.path} is shorter than a segment ({outcome.prediction.duration:.3f} s of "
                f"{classifier.segment_seconds:g} s): padded with silence to one segment",
                file=sys.stderr,
            )
    if args.output is not None:
        written = write_output(args.output, records, classifier, args.hop)
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    if not any(o.prediction is not None for o in outcomes):
        print(f"error: none of the {len(outcomes)} inputs could be predicted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
