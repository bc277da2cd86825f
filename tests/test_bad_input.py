"""Bad paths and values are one line naming the option or key, found before any work starts.

Output paths are checked first: each command here is given a checkpoint that does not exist, so
an error about the output proves it came before the checkpoint was even opened. Faults the
machine cannot produce on demand (a read-only mount, a full disk) are injected.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import metalcore.audio.cache as cache_module
from metalcore import evaluate, export, predict, report
from metalcore.audio.cache import AudioCache
from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError
from metalcore.data.datamodule import MusicDataModule
from metalcore.data.demo import render_track


def one_line_error(capsys, main, argv: list[str]) -> str:
    """Run a command's main; it must fail with exit status 2 and exactly one line on stderr."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err, err
    return err[-1]


@pytest.fixture
def paths(tmp_path) -> dict[str, Path]:
    folder, file = tmp_path / "a-folder", tmp_path / "a-file.csv"
    folder.mkdir()
    file.write_text("x")
    return {"folder": folder, "file": file, "missing": tmp_path / "no.ckpt", "below_file": file / "out.csv"}


def test_predict_checks_output_before_the_checkpoint(capsys, paths):
    song = str(paths["file"])
    line = one_line_error(capsys, predict.main, [str(paths["missing"]), song, "--output", str(paths["folder"])])
    assert "--output" in line and "is a folder" in line
    line = one_line_error(capsys, predict.main, [str(paths["missing"]), song, "--output", str(paths["below_file"])])
    assert "--output" in line and "is a file, not a folder" in line


@pytest.mark.parametrize("hop", ["nan", "inf", "-1", "0"])
def test_a_hop_that_is_not_a_positive_number_is_refused(capsys, paths, hop):
    line = one_line_error(capsys, predict.main, [str(paths["missing"]), str(paths["file"]), f"--hop={hop}"])
    assert line.startswith(f"error: --hop {float(hop)}: must be a positive number of seconds")


def test_evaluate_refuses_an_output_dir_that_is_a_file(capsys, paths):
    line = one_line_error(capsys, evaluate.main, [str(paths["missing"]), "--output-dir", str(paths["file"])])
    assert "--output-dir" in line and "is a file, not a folder" in line


@pytest.mark.parametrize(
    ("fmt", "output", "message"),
    [
        ("onnx", "folder", "is a folder"),
        ("onnx", "model.txt", "a onnx file must end in .onnx"),
        ("torchscript", "model.onnx", "must end in .pt or .pth or .torchscript"),
    ],
)
def test_export_checks_its_output_first(capsys, paths, fmt, output, message):
    target = paths["folder"] if output == "folder" else paths["folder"] / output
    line = one_line_error(capsys, export.main, [str(paths["missing"]), "--format", fmt, "--output", str(target)])
    assert message in line


def test_report_checks_its_outputs_first(capsys, paths):
    line = one_line_error(capsys, report.main, [str(paths["folder"]), "--output", str(paths["folder"])])
    assert "--output" in line and "is a folder" in line


def datamodule(root: Path, cache: Path, **kwargs) -> MusicDataModule:
    return MusicDataModule(str(root), str(cache), sample_rate=16000, segment_seconds=0.5, num_workers=0, **kwargs)


def test_a_cache_dir_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"data.cache_dir=.*file/cache: .*file is a file, not a folder"):
        datamodule(tmp_path, tmp_path / "file" / "cache").prepare()

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(UserError, match=r"^data.cache_dir=.*ro: cannot write there \(Read-only file system\)$"):
        datamodule(tmp_path, tmp_path / "ro").prepare()


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpy_cannot_take_is_one_line(tmp_path, seed):
    with pytest.raises(UserError, match=rf"^seed={seed} must be an integer from 0 to 4294967295$"):
        datamodule(tmp_path, tmp_path / "cache", seed=seed)


def test_a_full_disk_keeps_what_was_decoded_and_says_what_is_needed(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    sources = [write_audio(tmp_path / f"{i}.flac", render_track("metal", rng, 3.0, 16000), 16000) for i in range(3)]
    real = cache_module.atomic_file
    written = []

    def fills_up(path):
        if path.suffix == ".pcm" and len(written) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real(path)

    monkeypatch.setattr(cache_module, "atomic_file", fills_up)
    cache = AudioCache(tmp_path / "cache", 16000, 2)
    with pytest.raises(UserError) as err:
        cache.build(sources, workers=1)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"data.cache_dir={tmp_path / 'cache'}: disk full while decoding ")
    assert "the 1 tracks cached so far are kept, the 2 left need about 0.0 GiB" in str(err.value)
    monkeypatch.setattr(cache_module, "atomic_file", real)
    assert cache.lookup(sources[0]) is not None and cache.lookup(sources[1]) is None
    assert not list(cache.folder.glob("*.tmp")) and not list(cache.folder.glob("*.failed"))
    assert cache.build(sources, workers=1).decoded == 2  # the rest, once there is room


def test_a_class_too_small_for_the_splits_says_so(tmp_path):
    from metalcore.data.split import Split

    labels = ["metal"] * 6 + ["hardcore"]
    with pytest.raises(UserError, match=r"^class 'hardcore' has 1 track; each class needs at least 3, one for each"):
        Split().assign(labels, [f"band {i}" for i in range(7)], 0.2, 0.2, seed=0)


@pytest.mark.parametrize("n_mels", [0, -5])
def test_a_mel_band_count_below_one_names_n_mels(n_mels):
    from metalcore.models.frontend import MelFrontend

    with pytest.raises(UserError, match=rf"^features.n_mels={n_mels} must be at least 1"):
        MelFrontend(sample_rate=16000, n_mels=n_mels, n_fft=512)


@pytest.mark.parametrize(
    "option", ["--seconds=0", "--seconds=nan", "--tracks-per-class=0", "--sample-rate=0", "--seed=-1"]
)
def test_synth_refuses_values_that_make_no_demo_set(tmp_path, capsys, option):
    from metalcore import synth

    line = one_line_error(capsys, synth.main, [str(tmp_path / "demo"), option])
    assert option.split("=")[0] in line
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("target", ["long name", "proc"])
def test_an_output_the_system_cannot_hold_is_refused_before_the_work(capsys, paths, target):
    """A 250-byte name passed the check and failed after the work: its temporary name is ~21 bytes longer."""
    output = paths["folder"] / ("x" * 246 + ".csv") if target == "long name" else Path("/proc/labels.csv")
    argv = [str(paths["missing"]), str(paths["file"]), "--output", str(output)]
    line = one_line_error(capsys, predict.main, argv)
    expected = "its name is 250 bytes; at most 2" if target == "long name" else "cannot write in /proc"
    assert line.startswith(f"error: --output {output}: ") and expected in line


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("bench", ["--sweep", "-1"], "--sweep -1: must be 1 job or more"),
        ("bench", ["--sweep", "0"], "--sweep 0: must be 1 job or more"),
        ("bench", ["--sweep", "2", "--sweep-crops", "0"], "--sweep-crops 0: must be 1 or more"),
        (
            "report",
            ["{folder}", "--suspect-confidence", "nan"],
            "--suspect-confidence nan: must be more than 0, at most 1",
        ),
        (
            "report",
            ["{folder}", "--suspect-confidence", "2"],
            "--suspect-confidence 2.0: must be more than 0, at most 1",
        ),
        ("synth", ["{below_file}"], "OUT_DIR {below_file}: {file} is a file, not a folder"),
        ("synth", ["/proc/demo"], "OUT_DIR /proc/demo: cannot write in /proc"),
    ],
)
def test_options_no_run_can_use_are_one_line(capsys, paths, command, argv, message):
    import importlib

    main = importlib.import_module(f"metalcore.{command}").main
    line = one_line_error(capsys, main, [a.format(**paths) for a in argv])
    assert line.startswith(f"error: {message.format(**paths)}")


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_decoding(capsys, trained_run, paths):
    from conftest import read_metrics

    ckpt = read_metrics(trained_run)["best_checkpoint"]
    line = one_line_error(capsys, predict.main, [ckpt, str(paths["file"]), "--batch-size", "100000000"])
    assert line.startswith("error: --batch-size 100000000: a batch of 100000000 segments of 2 s needs about ")
    assert "GiB of memory available; use at most " in line


def test_a_data_root_that_is_a_file_or_a_class_folder_says_so(tmp_path, capsys, paths):
    from metalcore.data.catalogue import scan

    with pytest.raises(UserError, match=r"^data.root=.*a-file.csv: is a file, not a folder; give the folder that "):
        scan(paths["file"])
    metal = tmp_path / "lib" / "metal"
    metal.mkdir(parents=True)
    (metal / "Band - Song.flac").write_bytes(b"x")
    line = one_line_error(capsys, evaluate.main, [str(paths["missing"]), "--data-root", str(metal)])
    assert line == (
        f"error: --data-root {metal}: holds audio files but no class folders: it looks like the folder of one "
        f"class; give the folder above it, which holds one folder per class"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["data.root=/music/Mot\udcf6rhead"],
            "data.root=/music/Mot\udcf6rhead: holds bytes that are not UTF-8, "
            "which Hydra cannot parse unquoted; quote the value: 'data.root=\"/music/Mot\udcf6rhead\"'",
        ),
        (["hydra.run.dir=/proc/x/run"], "hydra.run.dir=/proc/x/run: cannot write in /proc"),
        (["hydra.run.dir={file}/run"], "hydra.run.dir={file}/run: {file} is a file, not a folder"),
    ],
)
def test_what_hydra_would_fail_on_before_metalcore_runs_is_one_line(paths, argv, message):
    from metalcore.training.config import check_command_line

    with pytest.raises(UserError) as err:
        check_command_line([a.format(**paths) for a in argv])
    assert str(err.value).startswith(message.format(**paths))
    check_command_line(["data.root='/music/Mot\udcf6rhead'", f"hydra.run.dir={paths['folder']}/run"])  # quoted: fine


def test_prepare_checks_the_command_line_before_hydra_reads_it():
    from conftest import run_module

    result = run_module("metalcore.prepare", "hydra.run.dir=/proc/x/run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: hydra.run.dir=/proc/x/run: cannot write in /proc")


@pytest.mark.parametrize("why", ["Ctrl-C", "SIGTERM"])
def test_a_stopped_cache_build_says_what_it_kept_in_one_line(tmp_path, monkeypatch, capsys, why):
    """Ctrl-C in prepare printed a 40-line traceback, SIGTERM only multiprocessing's semaphore warning."""
    from metalcore.core.errors import command

    rng = np.random.default_rng(0)
    sources = [write_audio(tmp_path / f"{i}.flac", render_track("metal", rng, 1.0, 16000), 16000) for i in range(3)]
    real = cache_module._build_one
    calls = []

    def stops_on_the_second(args):
        calls.append(args)
        if len(calls) == 2 and why == "Ctrl-C":
            raise KeyboardInterrupt
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, where the work is
        return real(args)

    monkeypatch.setattr(cache_module, "_build_one", stops_on_the_second)
    cache = AudioCache(tmp_path / "cache", 16000, 2)
    with pytest.raises(SystemExit) as exit_, command():  # every command's wrapper, train's and prepare's too
        cache.build(sources, workers=1)
    assert exit_.value.code == (130 if why == "Ctrl-C" else 143)
    assert capsys.readouterr().err.splitlines() == [
        f"stopped ({why}): the 1 tracks cached so far are kept in {cache.folder}; run again to decode the 2 left"
    ]
    assert cache.lookup(sources[0]) is not None and not list(cache.folder.glob("*.tmp"))


def test_ctrl_c_in_predict_is_one_line_and_status_130(capsys, monkeypatch, paths):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "classifier_from_args", lambda args: None)
    monkeypatch.setattr(predict, "find_tracks", lambda paths: ([paths[0]], []))
    monkeypatch.setattr(predict, "predict_files", interrupted)
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(paths["missing"]), str(paths["file"])])
    assert exit_.value.code == 130 and capsys.readouterr().err.splitlines() == ["stopped (Ctrl-C)"]
