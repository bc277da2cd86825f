"""DDP as the README runs it: two gloo CPU ranks, several epochs, the default callbacks and progress bar.

Every run is started in its own session and killed as a group when it passes its time limit, so a
hang fails the test (and leaves no rank behind) instead of stalling the suite. The runs also lower
``trainer.strategy.timeout``: a rank that waits at a collective for peers that never come ends the
run with one line, which the failure message then shows.
"""

from __future__ import annotations

import csv
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, read_metrics, tiny_overrides

from metalcore.data.datamodule import MusicDataModule

CPU = torch.device("cpu")
COLLECTIVE_TIMEOUT_S = 60  # far above any legitimate wait between two ranks of these tiny runs
RUN_LIMIT_S = 600  # one run, start to end, on a loaded 2-core machine: a backstop behind the timeout above


def ddp_overrides(cache_dir: Path, *extra: str) -> list[str]:
    """``tiny_overrides`` as the README's DDP line: trainer=ddp on 2 CPU ranks, the default progress bar."""
    drop = {"trainer=cpu", "trainer.enable_progress_bar=false"}
    return [
        *(o for o in tiny_overrides(cache_dir) if o not in drop),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"trainer.strategy.timeout.seconds={COLLECTIVE_TIMEOUT_S}",
        *extra,
    ]


def run_ranks(args: list[str], *, tty: bool = False, output: Path | None = None, runs: int = 1) -> tuple[int, str]:
    """Run ``args`` (a command that starts DDP ranks) as a user would; ``(exit status, output)``.

    The output goes to a pipe, to the file ``output``, or to a pseudo-terminal (``tty``: the rich
    progress bar then redraws in place). On passing ``RUN_LIMIT_S`` per run (a sweep holds ``runs``)
    the whole process group (the command, its ranks and their data-loader workers) is killed and
    the test fails as a hang.
    """
    chunks: list[bytes] = []
    if tty:
        main_fd, sink = pty.openpty()
        reader = threading.Thread(target=_read_terminal, args=(main_fd, chunks), daemon=True)
        reader.start()
    else:
        sink = open(output, "w") if output else subprocess.PIPE  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=sink,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if tty:
        os.close(sink)  # the command holds its own copies; the reader stops when they close
    elif output:
        sink.close()
    hung = False
    try:
        piped, _ = proc.communicate(timeout=runs * RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        piped, _ = proc.communicate()
        hung = True
    if tty:
        reader.join(timeout=30)
        os.close(main_fd)
    text = b"".join(chunks) if tty else output.read_bytes() if output else piped
    text = text.decode(errors="replace")
    if hung:
        pytest.fail(f"no end after {runs * RUN_LIMIT_S} s (a hang):\n{text[-3000:]}")
    return proc.returncode, text


def _read_terminal(fd: int, chunks: list[bytes]) -> None:
    """Everything written to a pseudo-terminal, until its last writer exits."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            return
        if not data:
            return
        chunks.append(data)


def assert_one_set_of_outputs(run_dir: Path, epochs: int) -> None:
    """Rank 0 alone wrote the outputs, once; every test clip and track was scored exactly once."""
    metrics = read_metrics(run_dir)
    with open(run_dir / "split.csv") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    for name in ("train", "val", "test"):
        assert metrics["counts"][name]["tracks"] == splits.count(name)
    test = metrics["test"]
    assert np.sum(test["track"]["confusion"]) == metrics["counts"]["test"]["tracks"]  # every track once
    assert np.sum(test["clip"]["confusion"]) == metrics["counts"]["test"]["clips"]  # every clip once
    assert metrics["epochs"] == epochs and metrics["environment"]["devices"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and Path(metrics["best_checkpoint"]).is_file()
    log = (run_dir / "train.log").read_text()
    assert log.count("test per track") == 1 and log.count("outputs in") == 1
    assert {p.parent for p in run_dir.rglob("events.out.tfevents.*")} == {run_dir / "tensorboard"}


# -- the held-out split of every rank ---------------------------------------------------------------
@pytest.mark.parametrize("on_device", [False, True], ids=["memory-mapped", "on device"])
def test_every_held_out_clip_is_scored_by_exactly_one_rank_when_the_count_is_odd(
    on_device: bool, demo_root: Path, cache_dir: Path, tmp_path: Path
):
    """Two ranks share the validation and test clips without overlap or padding, also when they do
    not divide evenly (3 and 5 tracks of 3 clips): every clip is scored once, by one of them."""
    library = tmp_path / "library"
    for genre, keep in (("hardcore", 8), ("metal", 7)):  # links to the cached demo tracks: nothing decoded
        (library / genre).mkdir(parents=True)
        for track in sorted((demo_root / genre).iterdir())[:keep]:
            (library / genre / track.name).symlink_to(track)
    datamodule = MusicDataModule(
        root=str(library),
        cache_dir=str(cache_dir),
        sample_rate=16000,
        segment_seconds=2.0,
        segments_per_track=3,
        val_fraction=0.2,  # 3 validation and 5 test tracks
        test_fraction=0.34,
        batch_size=4,
        num_workers=0,
        on_device=on_device,
        workers_for_decoding=1,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    for split, loader in (("val", datamodule.val_dataloader), ("test", datamodule.test_dataloader)):
        tracks = len(datamodule.datasets[split])
        assert tracks * 3 % 2 == 1, f"{split}: {tracks} tracks of 3 clips, an even count"
        scored = Counter()
        for rank in (0, 1):
            datamodule.trainer = SimpleNamespace(
                global_rank=rank, world_size=2, is_global_zero=rank == 0, strategy=SimpleNamespace(root_device=CPU)
            )
            for _, _, track_ids in loader():
                scored.update(track_ids.tolist())
        assert scored == dict.fromkeys(range(tracks), 3), split


# -- the default suite: the README line with the progress bar, a few epochs ---------------------------
def test_readme_ddp_line_finishes_with_the_progress_bar_on(tmp_path: Path, cache_dir: Path, demo_root: Path):
    """Rank 0's progress bar reads the epoch's metrics before the module's epoch-end hook, the other
    rank (no bar) after it: any cross-rank sync hidden in that read deadlocked here after epoch 1.
    The output goes to a file, so Lightning's (rich) bar is forced: it is the one that reads them.
    The library holds a file that cannot be decoded: it is reported once, not once per process."""
    library = tmp_path / "library"
    for genre in ("hardcore", "metal"):  # links to the cached demo tracks: nothing decoded
        (library / genre).mkdir(parents=True)
        for track in sorted((demo_root / genre).iterdir()):
            (library / genre / track.name).symlink_to(track)
    (library / "metal" / "broken.mp3").write_bytes(b"ID3" + bytes(2000))
    run_dir = tmp_path / "ddp"
    overrides = ddp_overrides(
        cache_dir,
        "trainer.max_epochs=2",
        "callbacks.progress_bar.interactive=true",
        f"data.root={library}",
        "~data.demo",
        f"hydra.run.dir={run_dir}",
    )
    status, output = run_ranks([sys.executable, "-m", "metalcore.train", *overrides])
    assert status == 0, output[-3000:]
    assert "MEMBER: 1/2" in output and "MEMBER: 2/2" in output
    assert_one_set_of_outputs(run_dir, epochs=2)
    skipped = f"skipped {library / 'metal' / 'broken.mp3'}: "
    assert output.count(skipped) == 1, output[-3000:]  # three times: the parent, rank 0 and rank 1
    assert (run_dir / "train.log").read_text().count(skipped) == 1


def _rank_that_misses_a_collective() -> None:
    """Rank 0 enters an all_reduce that rank 1 never joins (rank 1 is busy for longer than the limit)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ["LOCAL_RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=2))
    if rank == 0:
        dist.all_reduce(torch.ones(1), group=group)
    else:
        time.sleep(30)


def test_a_rank_that_waits_too_long_ends_the_run_with_one_line():
    from metalcore.core.errors import UserError
    from metalcore.training.launch import spawn

    with pytest.raises(UserError) as caught:
        spawn(_rank_that_misses_a_collective, (), processes=2)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("rank 0 waited 2 s in all_reduce for the other ranks and gave up")
    assert "trainer.strategy.timeout" in message


# -- slow: every way the README starts DDP, data-loader workers on ----------------------------------
TQDM_AND_EARLY_STOPPING = (
    "~callbacks.progress_bar",  # one progress bar: the user's own in place of metalcore's choice
    "+callbacks.progress._target_=lightning.pytorch.callbacks.TQDMProgressBar",
    "+callbacks.early_stopping._target_=lightning.pytorch.callbacks.EarlyStopping",
    "+callbacks.early_stopping.monitor=val/loss",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        pytest.param("file", TQDM_AND_EARLY_STOPPING, id="file-tqdm-early-stopping"),  # output to a file
        pytest.param("terminal", (), id="terminal-rich"),  # a pseudo-terminal: the rich bar redraws in place
        pytest.param("sweep", (), id="sweep"),  # python -m metalcore.train -m ... seed=1,2: two DDP jobs in a row
        pytest.param("torchrun", ("trainer.enable_progress_bar=false",), id="torchrun-no-bar"),
    ],
)
def test_readme_ddp_commands_finish_in_every_mode(
    tmp_path: Path, cache_dir: Path, demo_root: Path, mode: str, extra: tuple[str, ...]
):
    epochs = 3
    overrides = ddp_overrides(cache_dir, f"trainer.max_epochs={epochs}", "data.num_workers=1", *extra)
    train = [sys.executable, "-m", "metalcore.train"]
    if mode == "sweep":
        status, output = run_ranks([*train, "-m", *overrides, f"hydra.sweep.dir={tmp_path}", "seed=1,2"], runs=2)
        assert status == 0, output[-3000:]
        runs = sorted(p for p in tmp_path.iterdir() if (p / ".hydra").is_dir())
        assert [p.name for p in runs] == ["0", "1"]
    else:
        run_dir = tmp_path / "run"
        command = [*train, *overrides, f"hydra.run.dir={run_dir}"]
        if mode == "torchrun":  # --standalone: a free port, as other runs may share this machine
            command = [
                str(Path(sys.executable).parent / "torchrun"),
                "--standalone",
                "--nproc_per_node=2",
                *command[1:],
            ]
        status, output = run_ranks(
            command, tty=mode == "terminal", output=tmp_path / "out.txt" if mode == "file" else None
        )
        assert status == 0, output[-3000:]
        if mode != "torchrun":
            assert f"Epoch {epochs - 1}" in output  # the bar ran to the last epoch
        if mode == "terminal":
            assert "\x1b[" in output  # the rich bar drew for a terminal
        runs = [run_dir]
    for run in runs:
        assert_one_set_of_outputs(run, epochs=epochs)


# -- stop signals: the launcher passes them to every rank; a rank that dies ends the others --------------
def _rank_waiting_for_a_stop(folder: Path, die: bool) -> None:
    """A rank as metalcore.training.stops runs one: it waits for a stop signal, then raises ``Terminated``;
    with ``die`` rank 1 is killed instead, while rank 0 waits on (as in a collective that never ends)."""
    from metalcore.core.errors import Terminated
    from metalcore.training.stops import StopRequest

    rank = int(os.environ["LOCAL_RANK"])
    request = StopRequest()
    request.in_loop = True  # in an epoch, which acts on the request at its next safe point
    signal.signal(signal.SIGTERM, request.handle)
    signal.signal(signal.SIGINT, request.handle)
    (folder / f"started-{rank}").write_text(str(os.getpid()))
    if die and rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    while not request.received:
        time.sleep(0.05)
    (folder / f"stopped-{rank}").write_text(str(request.received[0]))
    raise Terminated(request.received[0])


def _when_started(folder: Path, then) -> threading.Thread:
    def wait() -> None:
        while len(list(folder.glob("started-*"))) < 2:
            time.sleep(0.05)
        then({int(p.name[-1]): int(p.read_text()) for p in folder.glob("started-*")})

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("to", [pytest.param("launcher", marks=pytest.mark.slow), "rank 1"])  # rank 1 goes through both
def test_a_stop_signal_reaches_every_rank_and_the_launcher_exits_143(tmp_path: Path, to: str):
    from metalcore.core.errors import Terminated
    from metalcore.training.launch import spawn

    def send(pids: dict[int, int]) -> None:
        os.kill(os.getpid() if to == "launcher" else pids[1], signal.SIGTERM)

    _when_started(tmp_path, send)
    with pytest.raises(Terminated) as stop:
        spawn(_rank_waiting_for_a_stop, (tmp_path, False), processes=2)
    assert stop.value.status == 143
    assert {p.name: p.read_text() for p in tmp_path.glob("stopped-*")} == {
        "stopped-0": str(int(signal.SIGTERM)),
        "stopped-1": str(int(signal.SIGTERM)),
    }
    assert not _alive(tmp_path)


def test_a_rank_that_dies_ends_the_others_with_one_line_naming_it(tmp_path: Path):
    from metalcore.core.errors import UserError
    from metalcore.training.launch import spawn

    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        spawn(_rank_waiting_for_a_stop, (tmp_path, True), processes=2)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("rank 1 (process ") and "ended with signal SIGKILL" in message
    assert "the other ranks were stopped" in message and "ckpt_path=last" in message
    assert time.monotonic() - started < 60 and not _alive(tmp_path)


def _alive(folder: Path) -> list[int]:
    """The rank processes of ``folder``'s run still running."""
    import psutil

    pids = [int(p.read_text()) for p in folder.glob("started-*")]
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "launcher", "rank 1"])
def test_sigterm_to_a_ddp_run_saves_stops_every_rank_and_leaves_no_process(
    tmp_path: Path, cache_dir: Path, demo_root: Path, to: str
):
    """``scancel``/``kill -- -PGID`` (the group), ``kill PID`` (the launcher) or a signal to one rank:
    one line, last.ckpt, status 143, and no process of the run left within 60 s."""
    import psutil
    import torch

    run_dir = tmp_path / "run"
    overrides = ddp_overrides(
        cache_dir, "trainer.max_epochs=50", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "metalcore.train", *overrides],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + RUN_LIMIT_S
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)  # the ranks, and multiprocessing's helper
    ranks = sorted((p for p in children if "spawn_main" in " ".join(p.cmdline())), key=lambda p: p.create_time())
    assert proc.poll() is None and len(ranks) == 2, "the run ended or hung before its first epoch was saved"
    time.sleep(1)  # into the next epoch's training
    if to == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid if to == "launcher" else ranks[1].pid, signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        left = proc.communicate()[0].decode(errors="replace")
        pytest.fail(f"no end 120 s after SIGTERM to the {to}:\n{left[-3000:]}")
    text = output.decode(errors="replace")
    assert proc.returncode == 143, text[-3000:]
    assert text.count("training stopped (SIGTERM)") == 1 and "Traceback" not in text, text[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] > 0
    stopped = time.monotonic()
    while any(_running(p) for p in children) and time.monotonic() - stopped < 60:
        time.sleep(0.5)
    assert not [p.pid for p in children if _running(p)]


def _running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
