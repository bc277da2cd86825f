"""File names that are not valid UTF-8 (``Mot\\xf6rhead - Ace.flac`` from an old rip) go everywhere a name goes.

POSIX names are bytes; such a name reaches Python as a string with a lone surrogate, which strict
UTF-8 refuses. Each command runs with a UTF-8 locale and without Python's UTF-8 mode (which would
hide the problem), as on a usual desktop, and its output is read as bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, read_metrics

from metalcore import evaluate, predict
from metalcore.audio.encode import write_audio
from metalcore.core.files import read_csv
from metalcore.data.demo import render_track

LATIN1 = os.fsdecode(b"Mot\xf6rhead - Ace.flac")
BROKEN = os.fsdecode(b"Br\xfctal - Cut.mp3")
RAW = b"Mot\xf6rhead - Ace.flac"


def command(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    """``python -m module args`` with a strict UTF-8 locale; stdout and stderr as bytes."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0", "PYTHONIOENCODING": "", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", module, *map(os.fsencode, args)], cwd=REPO, capture_output=True, env=env, timeout=300
    )


def library(root: Path, per_class: int = 4, seconds: float = 2.0, rate: int = 16000) -> Path:
    """Tracks of two genres, the first metal one under a Latin-1 byte name, plus one broken file so named."""
    rng = np.random.default_rng(7)
    for genre in ("metal", "hardcore"):
        (root / genre).mkdir(parents=True)
        for i in range(per_class):
            name = LATIN1 if (genre, i) == ("metal", 0) else f"Band {genre} {i} - Song.flac"
            write_audio(root / genre / name, render_track(genre, rng, seconds, rate), rate)
    (root / "hardcore" / BROKEN).write_text("not audio\n" * 50)
    return root


def test_prepare_caches_splits_lists_and_prints_a_latin1_name(tmp_path):
    root = library(tmp_path / "lib")
    run_dir = tmp_path / "run"
    result = command(
        "metalcore.prepare",
        f"data.root={root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        "data.sample_rate=16000",
        "data.segment_seconds=0.5",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.workers_for_decoding=1",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert b"Br\xfctal - Cut.mp3: not an audio file" in output and b"Traceback" not in output
    split = read_csv(run_dir / "split.csv")
    assert [row["path"] for row in split if row["path"].endswith(LATIN1)] == [str(root / "metal" / LATIN1)]
    assert RAW in (run_dir / "split.csv").read_bytes()  # the name's own bytes, not an escape
    skipped = read_csv(tmp_path / "cache" / "16000hz-2ch" / "skipped.csv")
    assert [Path(row["path"]) for row in skipped] == [root / "hardcore" / BROKEN]


@pytest.fixture(scope="module")
def checkpoint(trained_run) -> Path:
    return Path(read_metrics(trained_run)["best_checkpoint"])


def test_predict_and_evaluate_write_and_print_a_latin1_name(tmp_path, checkpoint):
    root = library(tmp_path / "lib", per_class=1, seconds=5.0, rate=22050)
    labels = tmp_path / "labels.csv"
    result = command("metalcore.predict", checkpoint, root, "--output", labels)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert RAW in result.stdout and RAW in labels.read_bytes()  # printed and written as its own bytes
    rows = {row["path"]: row for row in read_csv(labels)}
    assert rows[str(root / "metal" / LATIN1)]["label"] in ("metal", "hardcore")
    assert rows[str(root / "hardcore" / BROKEN)]["error"].startswith("not an audio file")

    assert predict.main([str(checkpoint), str(root), "--output", str(tmp_path / "labels.json")]) == 0
    tracks = json.loads((tmp_path / "labels.json").read_text())["tracks"]
    assert str(root / "metal" / LATIN1) in [t["path"] for t in tracks]  # escaped in JSON, the same name read back

    assert evaluate.main([str(checkpoint), "--data-root", str(root), "--output-dir", str(tmp_path / "eval")]) == 0
    assert str(root / "metal" / LATIN1) in [row["path"] for row in read_csv(tmp_path / "eval" / "tracks.csv")]
    failed = json.loads((tmp_path / "eval" / "metrics.json").read_text())["failed"]
    assert [f["path"] for f in failed] == [str(root / "hardcore" / BROKEN)]


def test_a_name_holding_a_carriage_return_survives_every_csv(tmp_path):
    """``lineterminator="\\n"`` stopped the csv writer from quoting ``\\r``; the reader then split the row."""
    from metalcore.core.files import write_csv

    name = str(tmp_path / "Band - Song\r.flac")
    write_csv(tmp_path / "t.csv", ["path", "true"], [[name, "metal"], ["b\nc.flac", "hardcore"]])
    assert [row["path"] for row in read_csv(tmp_path / "t.csv")] == [name, "b\nc.flac"]
    assert (tmp_path / "t.csv").read_bytes().startswith(b"path,true\n")  # lines still end in \n alone


def test_embeddings_of_odd_names_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A non-UTF-8 name crashed TensorBoard's metadata writer after embeddings/ was half written."""
    from torch.utils.tensorboard import SummaryWriter

    from metalcore.evaluation.embeddings import write_projector

    names = [LATIN1, "tab\tand\rreturn.flac", "plain.flac"]
    vectors = [np.full(4, i, dtype=np.float32) for i in range(3)]
    write_projector(tmp_path / "embeddings", vectors, [[n, "metal"] for n in names], ["track", "class"])
    metadata = next((tmp_path / "embeddings").rglob("metadata.tsv")).read_text(encoding="utf-8").split("\n")
    assert metadata[:4] == [
        "track\tclass",
        "Mot\\xf6rhead - Ace.flac\tmetal",
        "tab and return.flac\tmetal",
        "plain.flac\tmetal",
    ]

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_embedding", fails)
    with pytest.raises(OSError):
        write_projector(tmp_path / "embeddings", vectors, [[n, "metal"] for n in names], ["track", "class"])
    assert next((tmp_path / "embeddings").rglob("metadata.tsv")).is_file()  # the earlier projector, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings"]  # no temporary folder left behind
