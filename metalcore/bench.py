"""``python -m metalcore.bench``: metalcore's speed against the study's real data path, measured here, in one run.

It synthesises its own tracks (44.1 kHz stereo) in a temporary folder, cuts them into the study's
WAV pieces (1/60 of a track each) and prints
1. the cache build from cold (mp3, flac, Ogg Vorbis, AAC), in x realtime, per core and on every core;
2. loader throughput: the study's path (a WAV piece per clip, padded to 5.5 s, Mel and dB on the
   CPU in ``__getitem__``) against the whole-file path and metalcore's cache, raw and with its Mel;
3. with ``--probe FOLDS``: a frozen-probe sweep (``model=musicnn``) on the demo, features computed
   and then cached;
4. with ``--train``: training throughput, the study's pipeline against metalcore's, for the study's
   network and ours, on the best device (on CUDA also fp32 vs bf16-mixed, compile modes, layout and
   the on-device loader), with the study's run (12,960 clips x 10 epochs) extrapolated for each.
Every ratio compares figures measured in the same run. The code lives in ``metalcore.benchmarks``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from metalcore.benchmarks.build import BUILD_TARGET, pool_startup, time_build
from metalcore.benchmarks.machine import cores, load, machine
from metalcore.benchmarks.sources import BATCH, FORMATS, PIECES, RATE, SEGMENT_SECONDS, cut_pieces, make_sources
from metalcore.core.errors import UserError, command

STUDY_MODEL, OUR_MODEL = "study", "crnn"  # config group names (conf/model/) of the study's network and ours
CPU_TRAIN_TARGET = 1.3  # metalcore's pipeline / the study's, same network, on a CPU
GPU_TRAIN_TARGET, GPU_RUN_TARGET = 10.0, 30.0  # on one GPU: x the study's pipeline, seconds for the study's run


def verdict(ok: bool, target: str) -> str:
    return f"{target} {'met' if ok else 'MISSED'}"


def print_build(tmp: Path, sources: dict[str, list[Path]], workers: int) -> None:
    print(
        f"\ncache build from cold (decode, resample, write int16), x realtime; {workers} workers include starting them"
    )
    print(f"{'format':<6}  {'per core (1 worker)':>19}  {'total (' + str(workers) + ' workers)':>19}  target per core")
    for suffix in FORMATS:
        runs = {w: time_build(sources[suffix], tmp / f"cache{suffix}-{w}", w) for w in dict.fromkeys((1, workers))}
        cells = {w: f"{audio / wall:.0f}x in {wall:.2f} s" for w, (audio, wall, _) in runs.items()}
        audio, wall, _ = runs[1]
        target = verdict(audio / wall >= BUILD_TARGET, f">= {BUILD_TARGET:g}x")
        print(f"{suffix[1:]:<6}  {cells[1]:>19}  {cells[workers]:>19}  {target}", flush=True)
    if workers > 1:
        print(f"(starting {workers} worker processes took {pool_startup(workers):.2f} s of each total)")


def study_pieces(tracks, folder: Path) -> tuple[list[Path], list[int]]:
    """Each cached track cut into the study's 60 WAV pieces; (pieces, their track's class)."""
    pieces, labels = [], []
    for i, track in enumerate(tracks):
        cut = cut_pieces(np.asarray(track.open()), folder, f"track{i:03d}")
        pieces += cut
        labels += [i % 2] * len(cut)
    return pieces, labels


def print_frontend() -> None:
    from metalcore.benchmarks.loaders import frontend_times

    ms = frontend_times()
    print(f"\nMel front-end on this CPU, ms per clip (best of 5 batches of {BATCH}, 5.5 s stereo)")
    print(f"{'call':<58}  {'ms/clip':>7}  {'x study':>7}  target")
    target = verdict(ms["metalcore"] <= ms["study"], "no slower than the study's")
    for name, label in (
        ("study", "study: MelSpectrogram + dB per item, 1 thread (its workers)"),
        ("metalcore", "metalcore: MelFrontend per batch, as training runs it"),
        ("batched", "one batched MelSpectrogram call (what metalcore avoids)"),
    ):
        mark = target if name == "metalcore" else ""
        print(f"{label:<58}  {ms[name]:>7.2f}  {ms['study'] / ms[name]:>6.2f}x  {mark}", flush=True)


def print_loaders(cached, pieces, labels, clips: int, study_clips: int) -> None:
    from metalcore.benchmarks.loaders import PATHS, measure_loaders

    print(
        f"\nloaders, clips/s: batch {BATCH}, {SEGMENT_SECONDS:g} s clips at {RATE / 1000:g} kHz stereo; the study's "
        f"path reads {PIECES} WAV pieces per track"
    )
    print(f"{'path':<44}  {'workers':>7}  {'clips/s':>8}  {'x study':>8}")
    study = {}
    for path, workers, speed in measure_loaders(cached, pieces, labels, clips, study_clips):
        study.setdefault(workers, speed)
        print(f"{PATHS[path]:<44}  {workers:>7}  {speed:>8.1f}  {speed / study[workers]:>7.1f}x", flush=True)
    print("'metalcore: memory-mapped int16 slices' is what an accelerator waits for (its Mel runs there)")


def row(network: str, label: str, speed, base, target: str = "") -> None:
    """One line of the training table: rates, the ratio to the study's pipeline, the study's run in min:s."""
    minutes, seconds = divmod(round(speed.study_run()), 60)
    print(
        f"{network:<8}  {label:<64}  {speed.first:>6.1f}  {speed.steady:>6.1f}  "
        f"{speed.steady / base.steady:>6.2f}x  {minutes:>5d}:{seconds:02d}  {target}",
        flush=True,
    )


def print_training(tmp: Path, library: Path, pieces, labels, batches: int, workers: int, device_name: str) -> None:
    import torch
    from hydra import compose, initialize_config_dir

    from metalcore.benchmarks.training import metalcore_pipeline, study_pipeline, variants
    from metalcore.training.config import CONF, best_precision, make
    from metalcore.training.experiment import build

    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)

    # enough random crops per training track (half the tracks) for ``batches`` steps, as the study's pieces give
    crops = max(PIECES, math.ceil(batches * BATCH / max(1, len(labels) // PIECES // 2)))

    def config(model: str, *overrides: str):
        base = [f"model={model}", f"data.root={library}", f"paths.cache_dir={tmp / 'cache'}"]
        base += [f"paths.output_dir={tmp / 'run'}", "data.val_fraction=0.25", "data.test_fraction=0.25"]
        base += [f"data.segments_per_track={crops}"]
        base += [f"data.num_workers={workers}", f"data.workers_for_decoding={workers}"]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("train", overrides=[*base, *overrides])

    make(config(STUDY_MODEL).data).prepare(progress=False)  # decoded once, before any clock starts
    print(
        f"\ntraining, clips/s: batch {BATCH}, {SEGMENT_SECONDS:g} s at {RATE / 1000:g} kHz stereo on {device}; "
        f"{batches} steps per timed epoch; first epoch includes start-up; {workers} loader workers"
    )
    print(f"{'network':<8}  {'pipeline':<64}  {'first':>6}  {'steady':>6}  {'x study':>7}  {'study run':>9}  target")
    for network, model in (("study", STUDY_MODEL), ("ours", OUR_MODEL)):
        torch.manual_seed(0)
        net = make(config(model).model, num_classes=2)
        base = study_pipeline(net, pieces, labels, device, workers, batches)
        row(network, f"study: WAV pieces, Mel per clip in {workers} workers, 32-true", base, base)
        for k, variant in enumerate(variants(device, best_precision())):
            if network == "ours" and not variant.every_network:
                continue
            torch.manual_seed(0)
            cfg = config(model, *variant.overrides)
            speed = metalcore_pipeline(lambda cfg=cfg: build(cfg), device.type, variant.precision, batches)
            target = ""
            if network == "study" and k == 0:  # the defaults carry the target
                ratio = speed.steady / base.steady
                if device.type == "cuda":
                    ok = ratio >= GPU_TRAIN_TARGET and speed.study_run() <= GPU_RUN_TARGET
                    target = verdict(ok, f">= {GPU_TRAIN_TARGET:g}x, <= {GPU_RUN_TARGET:g} s")
                else:
                    target = verdict(ratio >= CPU_TRAIN_TARGET, f">= {CPU_TRAIN_TARGET:g}x")
            row(network, variant.label, speed, base, target)
    print("'x study': steady clips/s against the study's pipeline with the same network, measured in this run;")
    print("'study run': 12,960 clips x 10 epochs extrapolated (start-up + steady rate), in min:s")


def print_sweeps(tmp: Path, jobs: int, workers: int, crops: int) -> None:
    from metalcore.benchmarks.sweeps import EPOCHS, time_sweeps

    print(
        f"\nsweeps: {jobs} small training jobs (the demo set shrunk, {EPOCHS} epochs of {crops} crops per "
        "training track each), wall time per way"
    )
    print(f"{'way':<48}  {'seconds':>7}  {'jobs/hour':>9}  {'x one at a time':>15}")
    timed = time_sweeps(tmp, jobs, workers, crops)
    for label, seconds in timed:
        print(
            f"{label:<48}  {seconds:>7.1f}  {jobs * 3600 / seconds:>9.0f}  {timed[0][1] / seconds:>14.2f}x", flush=True
        )


def print_probe(tmp: Path, folds: int, tracks_per_class: int, seconds: float) -> None:
    from metalcore.benchmarks.probe import time_probe

    print(
        f"\nfrozen probe (model=musicnn): a {folds}-fold sweep on the demo ({tracks_per_class} tracks of "
        f"{seconds:g} s per class), one process, wall time"
    )
    print(f"{'sweep':<40}  {'seconds':>7}  {'per fold':>8}  {'CPU s':>7}")
    for label, wall, cpu in time_probe(tmp, folds, tracks_per_class, seconds):
        print(f"{label:<40}  {wall:>7.1f}  {wall / folds:>8.1f}  {cpu:>7.1f}", flush=True)
    print("CPU s: user + system time of the sweep's process, what it cost the cores whatever else ran")


@command()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metalcore.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4, help="synthetic tracks (default 4; --train: 8)")
    parser.add_argument("--seconds", type=float, default=240.0, help="length of each track (default 240)")
    parser.add_argument("--build-seconds", type=float, default=60.0, help="seconds of each track built per format")
    parser.add_argument("--workers", type=int, default=cores(), help="processes for the all-core build, loaders")
    parser.add_argument("--clips", type=int, default=480, help="clips timed per metalcore loader run (default 480)")
    parser.add_argument("--study-clips", type=int, default=160, help="clips timed per study/naive run (default 160)")
    parser.add_argument("--train", action="store_true", help="time training instead of the build and the loaders")
    parser.add_argument("--batches", type=int, default=24, help="--train: steps per timed epoch (default 24)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="--train: device")
    parser.add_argument("--sweep", type=int, metavar="JOBS", help="time a sweep of JOBS small jobs instead")
    parser.add_argument(
        "--sweep-crops", type=int, default=24, help="--sweep: clips per training track and epoch, the size of a job"
    )
    parser.add_argument(
        "--probe", type=int, default=0, metavar="FOLDS", help="time a FOLDS-fold frozen-probe sweep on the demo instead"
    )
    parser.add_argument("--quick", action="store_true", help="a small run that checks every row is computed")
    args = parser.parse_args(argv)
    if args.train and "--tracks" not in (argv or sys.argv):
        args.tracks = 8  # four per class: the DataModule's split needs a track of each class in each split
    if args.quick:
        args.tracks, args.seconds, args.build_seconds = (8 if args.train else 2), 12.0, 6.0
        args.clips, args.study_clips, args.batches = 32, 16, 2
    if args.sweep is not None and args.sweep < 1:
        raise UserError(f"--sweep {args.sweep}: must be 1 job or more")
    if args.sweep_crops < 1:
        raise UserError(f"--sweep-crops {args.sweep_crops}: must be 1 or more")
    if args.seconds <= SEGMENT_SECONDS or args.tracks < 1 or args.workers < 1:
        raise UserError(f"--seconds must exceed the {SEGMENT_SECONDS} s segment; --tracks and --workers >= 1")

    print(f"metalcore benchmark on {machine()}; {load()} at the start")
    if args.quick:
        print("--quick: a check that the benchmark runs; its short tracks make the figures unrepresentative")
    with tempfile.TemporaryDirectory(prefix="metalcore-bench-") as tmp:
        tmp = Path(tmp)
        if args.sweep is not None:
            print_sweeps(tmp, args.sweep, args.workers, args.sweep_crops)
            print(f"{load()} at the end")
            return
        if args.probe:  # the demo's default size; --quick: a small one
            print_probe(tmp, args.probe, *((8, 8.0) if args.quick else (24, 30.0)))
            print(f"{load()} at the end")
            return
        print(f"sources: {args.tracks} synthetic tracks x {args.seconds:g} s, {RATE / 1000:g} kHz stereo", flush=True)
        build_seconds = 0 if args.train else args.build_seconds
        tracks, build_sources = make_sources(tmp, args.tracks, args.seconds, build_seconds, args.workers)
        _, _, cached = time_build(tracks, tmp / "cache", args.workers)
        pieces, labels = study_pieces(cached, tmp / "pieces")
        if args.train:
            print_training(tmp, tmp / "library", pieces, labels, args.batches, min(2, args.workers), args.device)
        else:
            print_build(tmp, build_sources, args.workers)
            print_loaders(cached, pieces, labels, args.clips, args.study_clips)
            print_frontend()
    print(f"{load()} at the end")


if __name__ == "__main__":
    sys.exit(main())
