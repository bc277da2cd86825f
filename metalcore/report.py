"""``python -m metalcore.report MULTIRUN_DIR``: a sweep in one table, seeds pooled, failures listed.

The same report, with its plot, goes to ``report.html`` in the sweep folder, each configuration
linked to its jobs' evaluation pages (``metalcore.evaluate``'s ``report.html``) where they exist.
Beside the table: the folds of a cross-validation pooled into out-of-fold scores with intervals
(``oof_tracks.csv``) and a list of suspected labels (``suspected_labels.csv``); every configuration
compared with the best, and with ``--baseline``, on paired tracks (same seed and fold).

Every job folder Hydra made under the sweep (``<job>/.hydra/overrides.yaml``) is one row's worth
of evidence: its overrides say what it tried, its ``metrics.json`` what it scored. Jobs that share
all overrides but ``seed`` are one configuration, reported as mean +- std over the seeds it
finished, sorted by the chosen metric. Hydra keeps a sweep going past a failed job and raises only at
the end (hydra #2551), so a job without metrics.json is listed, never dropped: ``failed`` when its
log records an error, ``unfinished`` when it does not (still running, or killed); jobs the sweep
never reached are counted from ``multirun.yaml``.

    python -m metalcore.report multirun/2025-01-01/12-00-00 --metric test.track.f1 \
        --output ablation.csv --plot ablation.png

``--gap`` adds the artist effect (``experiment=artist_effect``): each configuration's score held out
by track minus held out by artist, with intervals over seeds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from metalcore.core import files
from metalcore.core.errors import UserError, command
from metalcore.core.files import writable_file
from metalcore.evaluation.artist_gap import render_gaps
from metalcore.evaluation.page.markup import PAGE
from metalcore.evaluation.page.sweep import write_sweep_page
from metalcore.evaluation.pooled import render_pooled
from metalcore.evaluation.sweep import DEFAULT_METRIC, GROUPED_OUT, load
from metalcore.evaluation.sweep_tables import plot, render, write_table

ARTIST_GAP = "data.split.group_by=track,artist"


@command()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalcore.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path, help="a sweep folder (the one holding multirun.yaml)")
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"sort and plot by this (default {DEFAULT_METRIC}; e.g. test.clip.f1, val/track_f1, test/track_acc)",
    )
    parser.add_argument("--output", type=Path, help="also write the table as CSV here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the metric against each swept parameter here")
    parser.add_argument("--per-job", action="store_true", help="one row per job instead of pooling seeds")
    parser.add_argument(
        "--baseline",
        metavar="JOB|KEY=VALUE",
        help="compare every configuration with this one on paired tracks (a job folder, or e.g. model=cnn)",
    )
    parser.add_argument(
        "--suspect-confidence",
        type=float,
        default=0.8,
        metavar="P",
        help="list held-out tracks put in another class with at least this confidence (default 0.8)",
    )
    parser.add_argument(
        "--gap",
        nargs="?",
        const=ARTIST_GAP,
        metavar="KEY=SEEN,UNSEEN",
        help=f"also tabulate the metric with KEY=SEEN minus with KEY=UNSEEN per configuration (default {ARTIST_GAP})",
    )
    args = parser.parse_args(argv)
    if not 0 < args.suspect_confidence <= 1:  # NaN fails this too
        raise UserError(f"--suspect-confidence {args.suspect_confidence}: must be more than 0, at most 1")
    if not args.multirun_dir.is_dir():
        raise UserError(f"{args.multirun_dir} is not a folder")
    if args.gap and (args.gap.count("=") != 1 or args.gap.split("=")[1].count(",") != 1):
        raise UserError(f"--gap {args.gap}: expected KEY=SEEN,UNSEEN, e.g. {ARTIST_GAP}")
    for option, path in (("--output", args.output), ("--plot", args.plot)):
        if path is not None:  # before the sweep is read and the plot drawn
            writable_file(path, option)
    sweep = load(args.multirun_dir, args.metric, args.per_job)
    report = [render(sweep)]
    print(report[0])
    text, tables = render_pooled(sweep, args.baseline, args.suspect_confidence)
    if text:
        print(text)
        report.append(text)
    for name, (header, rows) in tables.items():
        files.write_csv(args.multirun_dir / name, header, rows)
        print(f"{name} written to {args.multirun_dir / name}")
    if args.gap:
        key, values = args.gap.split("=")
        report.append(render_gaps(sweep, key, *values.split(",")))
        print("\n" + report[-1])
    if args.output:
        write_table(args.output, sweep.groups, sweep.keys, sweep.columns)
        print(f"\ntable written to {args.output}")
    swept = [k for k in sweep.keys if k not in GROUPED_OUT]
    if args.plot:
        if swept:
            plot(args.plot, sweep.jobs, swept, sweep.metric)
            print(f"plot written to {args.plot}")
        else:
            print("nothing but the seed was swept: no plot", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        figure = args.plot if args.plot and swept else Path(scratch) / "plot.png"
        if swept and not args.plot:
            plot(figure, sweep.jobs, swept, sweep.metric)
        page = write_sweep_page(args.multirun_dir / PAGE, sweep, "\n\n".join(report), figure if swept else None)
    print(f"page written to {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
