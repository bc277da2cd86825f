"""A damaged checkpoint is refused before use, with one line naming what is wrong; no command answers NaN.

Each case starts from a copy of the session's tested checkpoint: 2 KB of random bytes written into
its middle (the corruption a bad disk block leaves), one weight's bytes changed inside the file,
a NaN weight (a run that diverged), and a fitted temperature of 0, NaN or below 0.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_metrics

from metalcore import evaluate, export, predict
from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError
from metalcore.data.demo import render_track
from metalcore.inference.checkpoint import Classifier
from metalcore.inference.tracks import predict_track
from metalcore.models.weights import DIGEST, digest


@pytest.fixture(scope="module")
def tested(trained_run) -> Path:
    return Path(read_metrics(trained_run)["best_checkpoint"])


@pytest.fixture()
def song(tmp_path) -> Path:
    return write_audio(tmp_path / "song.wav", render_track("metal", np.random.default_rng(5), 3.0, 16000), 16000)


def random_bytes_in_the_middle(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = np.random.default_rng(0).bytes(2048)
    target.write_bytes(bytes(data))
    return target


def one_weight_changed(source: Path, target: Path) -> Path:
    """Bytes inside the largest weight's stored data changed, the archive otherwise intact."""
    with zipfile.ZipFile(source) as archive:
        largest = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(source.read_bytes())
    with open(source, "rb") as f:  # the stored entry's data begins after its local header
        f.seek(largest.header_offset + 26)
        name_length, extra_length = np.frombuffer(f.read(4), dtype="<u2")
    start = largest.header_offset + 30 + int(name_length) + int(extra_length) + largest.file_size // 2
    data[start : start + 64] = np.random.default_rng(1).bytes(64)
    target.write_bytes(bytes(data))
    return target


def resaved(source: Path, target: Path, change) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


def nan_weight(checkpoint: dict) -> None:
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    checkpoint["state_dict"][name][0] = math.nan
    checkpoint[DIGEST] = digest(checkpoint)  # as a run that diverged would record it


def temperature(value: float):
    def change(checkpoint: dict) -> None:
        checkpoint["calibration"]["temperature"] = value

    return change


def test_training_records_the_digest_of_the_weights(tested):
    for path in (tested, tested.parent / "last.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint[DIGEST] == digest(checkpoint) and checkpoint["optimizer_states"], path


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("random bytes", ""),  # whichever part they hit (weights, optimiser state, the archive), it is refused
        ("weight bytes", "corrupted: its content differs from the checksum recorded when it was saved"),
        ("NaN weight", "holds NaN or infinite values"),
        ("temperature 0", "calibration temperature is 0"),
        ("temperature NaN", "calibration temperature is nan"),
        ("temperature -1", "calibration temperature is -1"),
    ],
)
def test_a_damaged_checkpoint_is_refused_by_predict_evaluate_and_export(tested, tmp_path, song, capsys, case, words):
    damaged = tmp_path / "damaged.ckpt"
    make = {
        "random bytes": lambda: random_bytes_in_the_middle(tested, damaged),
        "weight bytes": lambda: one_weight_changed(tested, damaged),
        "NaN weight": lambda: resaved(tested, damaged, nan_weight),
        "temperature 0": lambda: resaved(tested, damaged, temperature(0.0)),
        "temperature NaN": lambda: resaved(tested, damaged, temperature(math.nan)),
        "temperature -1": lambda: resaved(tested, damaged, temperature(-1.0)),
    }
    make[case]()
    commands = {
        "predict": lambda: predict.main([str(damaged), str(song)]),
        "evaluate": lambda: evaluate.main([str(damaged), "--output-dir", str(tmp_path / "eval")]),
        "export": lambda: export.main([str(damaged), "--format", "torchscript"]),
    }
    for name, command in commands.items():
        with pytest.raises(SystemExit) as stop:
            command()
        assert stop.value.code == 2, name
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert err.startswith(f"error: {damaged}: ") and words in err, (name, err)
        assert "nan" not in out.lower(), (name, out)
    assert not (tmp_path / "eval" / "metrics.json").exists() and not list(tmp_path.glob("*.pt"))


def test_a_non_finite_output_is_an_error_not_an_answer(tested, song):
    classifier = Classifier.from_checkpoint(tested, "cpu")
    with torch.no_grad():
        next(p for p in classifier.net.parameters() if p.is_floating_point()).fill_(math.inf)
    with pytest.raises(UserError, match=r"song.wav: the model gave NaN or infinite probabilities"):
        predict_track(classifier, song)
