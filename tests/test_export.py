"""``python -m metalcore.export``: one artefact, raw audio in, the Lightning model's probabilities out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CALIBRATED_TEMPERATURE
from hydra.utils import instantiate

from metalcore import export
from metalcore.training.module import GenreClassifier


@pytest.fixture(scope="module")
def checkpoint(calibrated_checkpoint) -> Path:
    """The trained run's best, calibrated at T = 2: the artefact must carry the temperature."""
    return calibrated_checkpoint


@pytest.fixture(scope="module")
def lightning_model(checkpoint) -> GenreClassifier:
    """The trained module as Lightning loads it, built from the checkpoint's own configs."""
    spec = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["spec"]
    return GenreClassifier.load_from_checkpoint(
        checkpoint,
        frontend=instantiate(spec["features"]),
        net=instantiate(spec["model"]),
        optimizer=None,
        map_location="cpu",
    ).eval()


def audio_batches() -> list[np.ndarray]:
    """Quiet noise, a loud sine with noise, and a length that is not a segment: float32 (batch, 2, samples)."""
    rng = np.random.default_rng(0)
    t = np.arange(45000) / 16000
    loud = 0.8 * np.sin(2 * np.pi * 110 * t) + 0.1 * rng.standard_normal((3, 2, 45000))
    return [(0.05 * rng.standard_normal((1, 2, 32000))).astype(np.float32), loud.astype(np.float32)]


def run_onnx(path: Path, audio: np.ndarray) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"audio": audio})[0]


def run_torchscript(path: Path, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(torch.from_numpy(audio)).numpy()


def read_metadata(path: Path, fmt: str) -> dict:
    if fmt == "onnx":
        import onnx

        return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    extra = {"metalcore.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["metalcore.json"])


@pytest.mark.parametrize("fmt, run", [("onnx", run_onnx), ("torchscript", run_torchscript)])
def test_export_matches_the_lightning_model(checkpoint, lightning_model, tmp_path, capsys, fmt, run):
    out = tmp_path / f"model.{fmt}"
    assert export.main([str(checkpoint), "--format", fmt, "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    temperature = torch.load(checkpoint, map_location="cpu", weights_only=True)["calibration"]["temperature"]
    assert temperature == CALIBRATED_TEMPERATURE
    for audio in audio_batches():
        with torch.no_grad():  # the artefact carries the temperature fitted after training
            expected = (lightning_model(torch.from_numpy(audio)) / temperature).softmax(-1).numpy()
        got = run(out, audio)
        assert got.shape == expected.shape and np.allclose(got.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    meta = read_metadata(out, fmt)
    assert (meta["classes"], meta["sample_rate"], meta["channels"], meta["segment_seconds"]) == (
        ["hardcore", "metal"],
        16000,
        2,
        2.0,
    )


def test_export_writes_beside_the_checkpoint_by_default(checkpoint, tmp_path, capsys):
    copy = tmp_path / "best.ckpt"
    copy.write_bytes(checkpoint.read_bytes())
    assert export.main([str(copy)]) == 0
    assert (tmp_path / "best.onnx").is_file()
    with pytest.raises(SystemExit) as stopped:
        export.main([str(tmp_path / "missing.ckpt")])
    assert stopped.value.code == 2
    assert "checkpoint not found" in capsys.readouterr().err
