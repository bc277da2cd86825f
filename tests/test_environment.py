"""The environment: the pinned torch/torchaudio pair loads, doctor explains a broken one, CI's drift
check names what moved, and every run and checkpoint records what it ran under."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REPO, read_metrics

from metalcore import doctor
from metalcore.core import health
from metalcore.core.environment import DISTRIBUTIONS, environment, pair_changed, spread, version
from metalcore.inference.checkpoint import Classifier
from metalcore.report import main as report_command

RECORDED = {
    "python",
    "torch",
    "torchaudio",
    "lightning",
    "hydra",
    "torchmetrics",
    "av",
    "libavcodec",
    "commit",
    "dirty",
}
MOVED = "2.11.99"  # a torchaudio release that is not the pinned one


def test_torchaudio_extension_loads_beside_the_installed_torch():
    """The failure a fresh install met: torchaudio's compiled extension built against another libtorch."""
    checks = list(health.torch_pair())
    assert [(c.name, c.status) for c in checks] == [("torch", "ok"), ("torchaudio", "ok")], checks
    pins = {r.name: r for r in health.declared()}
    assert str(pins["torch"].specifier).startswith("==") and str(pins["torchaudio"].specifier).startswith("==")
    assert pins["torchaudio"].specifier.contains(version("torchaudio"))


def broken_torchaudio(folder: Path, release: str = MOVED) -> Path:
    """A torchaudio that fails to load as one built against another libtorch does, first on the path."""
    package = folder / "torchaudio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            try:
                raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")
            except OSError as err:
                raise OSError("Could not load this library: libtorchaudio.so") from err
            """
        )
    )
    info = folder / f"torchaudio-{release}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchaudio\nVersion: {release}\n")
    return folder


def interpreter(folder: Path, overlay: Path) -> Path:
    """This Python with ``overlay`` first on its path: an environment where the pair is mismatched."""
    script = folder / "python-with-overlay"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{overlay}:{REPO}" exec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script


def test_doctor_passes_here_and_prints_what_matters(tmp_path, capsys):
    assert doctor.main(["--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    for fact in ("python", version("torch"), version("torchaudio"), "libavcodec", "bf16", "GiB free"):
        assert fact in out, out
    assert "extension loads beside torch" in out and out.rstrip().endswith("metalcore can run here")


def test_doctor_names_a_broken_pair_and_its_fix(tmp_path):
    overlay = broken_torchaudio(tmp_path / "overlay")
    result = subprocess.run(
        [str(interpreter(tmp_path, overlay)), "-m", "metalcore.doctor", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    broken = next(i for i, line in enumerate(lines) if line.startswith("FAIL") and "extension does not load" in line)
    assert f"torchaudio {MOVED}" in " ".join(lines[broken].split()) and "undefined symbol" in lines[broken]
    assert f"torchaudio=={version('torchaudio')}" in lines[broken + 1] and "fix:" in lines[broken + 1]
    assert lines[-1] == "metalcore cannot run here: torchaudio broken (fixes above)"


def drift(tmp_path: Path, overlay: Path) -> subprocess.CompletedProcess:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# a lock\ntorch=={version('torch')}\ntorchaudio=={version('torchaudio')}\n")
    fresh = interpreter(tmp_path, overlay)
    return subprocess.run(
        [sys.executable, str(REPO / ".ci" / "drift.py"), str(fresh), sys.executable, str(lock)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_ci_drift_check_fails_with_one_line_naming_what_moved(tmp_path):
    """.ci/run's install step: the README's install broken by a moved torchaudio, the lock intact."""
    result = drift(tmp_path, broken_torchaudio(tmp_path / "overlay"))
    assert result.returncode == 1
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1, result.stdout
    line = result.stdout
    assert f"torchaudio {version('torchaudio')} -> {MOVED}" in line and "torch " not in line.split("moved")[1]
    assert "pin the working version in pyproject.toml" in line and ".ci/lock" in line


@pytest.mark.slow  # .ci/run makes this check on its own fresh install every time
def test_ci_drift_check_passes_an_intact_install(tmp_path):
    result = drift(tmp_path, tmp_path)  # nothing on the overlay path: the installed, pinned pair
    assert result.returncode == 0 and "passes doctor" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_ci_drift_check_on_the_real_mismatched_release(tmp_path):
    """torchaudio 2.11.1 (built against a newer libtorch) beside the pinned torch, as a fresh resolve got it."""
    overlay = tmp_path / "overlay"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(overlay),
            "torchaudio==2.11.1",
        ],
        check=True,
    )
    result = drift(tmp_path, overlay)
    assert result.returncode == 1 and len(result.stdout.splitlines()) == 1, result.stdout + result.stderr
    assert f"torchaudio {version('torchaudio')} -> 2.11.1" in result.stdout


def test_the_lock_pins_every_package_of_the_tested_environment():
    lock = (REPO / "requirements.lock").read_text().splitlines()
    pins = dict(line.split("==") for line in lock if line and not line.startswith("#"))
    assert all(value and "<" not in value and ">" not in value for value in pins.values())
    for key, dist in DISTRIBUTIONS.items():
        if key != "metalcore":  # installed editable, from the checkout
            assert dist in pins, dist
    assert pins["torch"] == version("torch") and pins["torchaudio"] == version("torchaudio")


def test_a_run_records_its_environment(trained_run: Path):
    recorded = read_metrics(trained_run)["environment"]
    assert set(recorded) >= RECORDED, RECORDED - set(recorded)
    here = environment()
    for key in ("python", "torch", "torchaudio", "lightning", "hydra", "av", "libavcodec"):
        assert recorded[key] == here[key], key
    assert len(recorded["commit"]) == 40 and isinstance(recorded["dirty"], bool)
    checkpoint = next((trained_run / "checkpoints").glob("epoch*.ckpt"))
    spec = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["spec"]
    assert set(spec["environment"]) >= RECORDED


def test_a_checkpoint_from_another_pair_says_so_and_still_loads(trained_run: Path, tmp_path, caplog):
    checkpoint = torch.load(next((trained_run / "checkpoints").glob("epoch*.ckpt")), weights_only=True)
    checkpoint["hyper_parameters"]["spec"]["environment"]["torch"] = "2.9.1"
    moved = tmp_path / "older.ckpt"
    torch.save(checkpoint, moved)
    with caplog.at_level(logging.WARNING, logger="metalcore"):
        classifier = Classifier.from_checkpoint(moved, "cpu")
    notes = [r.getMessage() for r in caplog.records if "made under" in r.getMessage()]
    assert notes == [
        f"{moved}: made under torch 2.9.1 + torchaudio {version('torchaudio')}, running under "
        f"torch {version('torch')} + torchaudio {version('torchaudio')}: its outputs may differ slightly"
    ]
    assert classifier(torch.zeros(1, classifier.channels, classifier.segment_samples)).isfinite().all()
    assert pair_changed({}, None) is None  # checkpoints older than the record claim nothing


def test_report_says_when_jobs_ran_under_different_environments(tmp_path, capsys):
    from test_report import make_job, write_multirun

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun(sweep, ["model=crnn,cnn"])
    for num, (model, torch_version) in enumerate((("crnn", "2.11.0"), ("cnn", "2.10.0"))):
        job = make_job(sweep, num, [f"model={model}"], track_acc=0.8)
        metrics = json.loads((job / "metrics.json").read_text())
        metrics["environment"] = {**environment(), "torch": torch_version}
        (job / "metrics.json").write_text(json.dumps(metrics))
    assert report_command([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "different environments" in out
    assert "- torch: 2.11.0 (1: 0); 2.10.0 (1: 1)" in out
    same = {"a": environment(), "b": environment()}
    assert spread(same) == []
