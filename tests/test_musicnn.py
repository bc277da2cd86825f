"""The musicnn port: weights read without TensorFlow, verified, cached, and equal to the original's outputs.

The reference values in ``tests/reference/musicnn_reference.npz`` were computed by the original
models under TensorFlow (``tests/reference/musicnn_reference.py``); the slow test recomputes them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_config

from metalcore import pretrained
from metalcore.core.errors import UserError
from metalcore.models.musicnn import (
    BACKBONES,
    MSD_TAGS,
    PATCH_FRAMES,
    Musicnn,
    MusicnnFrontend,
    load_musicnn,
)
from metalcore.models.pretrained.bundle import BundleError, read_bundle, read_index
from metalcore.models.pretrained.musicnn import MUSICNN_WHEEL, weights_path
from metalcore.models.pretrained.wheel import WHEELS_ENV, fetch_wheel, pretrained_folder

TOLERANCE = 1e-4  # on tag probabilities, as promised in docs/pretrained.md
REFERENCE_SCRIPT = Path(__file__).parent / "reference" / "musicnn_reference.py"


def _reference_module():
    spec = importlib.util.spec_from_file_location("musicnn_reference", REFERENCE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = _reference_module()


def _port_outputs(backbone: str, cache: Path) -> dict[str, torch.Tensor]:
    """The port's outputs on the reference inputs, keyed like the fixture."""
    patches, waveforms = REFERENCE.reference_inputs()
    net = load_musicnn(backbone, cache)
    with torch.no_grad():
        spec = MusicnnFrontend()(torch.from_numpy(waveforms)[:, None])  # (2, 1, 96, 188)
        outputs = {
            "patches": net(torch.from_numpy(patches).transpose(1, 2)[:, None]),
            "audio": net(spec[..., :PATCH_FRAMES]),  # musicnn's batch_data keeps the first 187 frames
        }
    return {
        f"{backbone}/{source}/{key}": value for source, out in outputs.items() for key, value in out._asdict().items()
    }


def _compare(fixture: dict, cache: Path) -> dict[str, float]:
    """Each backbone's largest tag-probability difference from ``fixture``; asserts the other outputs."""
    worst = {}
    for backbone in BACKBONES:
        worst[backbone] = 0.0
        for key, value in _port_outputs(backbone, cache).items():
            if key not in fixture:
                continue
            reference = fixture[key]
            assert value.shape == reference.shape, key
            if key.endswith("/tags"):
                worst[backbone] = max(worst[backbone], float(np.abs(value.numpy() - reference).max()))
            else:  # logits, embedding, pooled: float32 sums of hundreds of terms, scale up to ~50
                np.testing.assert_allclose(value.numpy(), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    return worst


def test_tags_equal_the_original_tensorflow_models(musicnn_cache):
    """Tag probabilities of all four backbones within 1e-4 of the original's, from log-Mel patches and
    from waveforms through the front-end; embeddings and pooled features too. ``-s`` prints the figures."""
    worst = _compare(dict(np.load(REFERENCE.FIXTURE)), musicnn_cache)
    print("largest |tag probability difference| from the original:", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) < TOLERANCE, worst


def test_frontend_equals_musicnns_librosa_frontend():
    """The log-Mel at the first, last and a middle frame (where centring pads) equals musicnn's librosa one."""
    fixture = np.load(REFERENCE.FIXTURE)
    _, waveforms = REFERENCE.reference_inputs()
    spec = MusicnnFrontend()(torch.from_numpy(waveforms)[:, None])  # (2, 1, 96, 188)
    assert spec.shape == (2, 1, 96, 188)
    frames = spec[:, 0].transpose(1, 2)[:, list(fixture["logmel_frames"])].numpy()
    np.testing.assert_allclose(frames, fixture["logmel"], atol=1e-5)


def test_frontend_mixes_channels_and_saturates_instead_of_overflowing():
    """Stereo is averaged to mono as librosa.load does; a very loud tone stays finite (float16 would give inf)."""
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t)
    frontend = MusicnnFrontend()
    stereo = frontend(torch.stack([tone, torch.zeros_like(tone)])[None])
    mono = frontend((0.5 * tone)[None, None])
    torch.testing.assert_close(stereo, mono)
    loud = frontend((1e4 * tone)[None, None])
    assert torch.isfinite(loud).all() and loud.max() == pytest.approx(np.log10(10000 * 65504.0 + 1), rel=1e-6)
    with pytest.raises(UserError, match=r"data\.sample_rate=22050"):
        MusicnnFrontend(22050)


def test_musicnn_takes_any_length_and_reports_every_output(musicnn_cache):
    """Musicnn is fully convolutional with global pooling: 4 s patches work, shapes as documented."""
    net = load_musicnn("MSD_musicnn", musicnn_cache)
    assert isinstance(net, Musicnn) and net.tags == MSD_TAGS and len(net.tags) == 50
    with torch.no_grad():
        out = net(torch.rand(3, 1, 96, 250) * 4)
    assert out.logits.shape == out.tags.shape == (3, 50)
    assert out.embedding.shape == (3, 200) and out.pooled.shape == (3, 1506)
    torch.testing.assert_close(out.tags, torch.sigmoid(out.logits))
    assert net.source["sha256"] == MUSICNN_WHEEL.sha256 and net.source["licence"] == "ISC"
    assert "non-commercial" in load_musicnn("MTT_musicnn", musicnn_cache).source["trained_on"]


def test_damaged_checkpoint_bytes_are_refused(musicnn_cache):
    """A flipped byte inside a tensor fails its CRC32C instead of becoming a wrong weight."""
    wheel = pretrained_folder(musicnn_cache) / MUSICNN_WHEEL.filename
    with zipfile.ZipFile(wheel) as zf:
        index = zf.read("musicnn/MSD_musicnn/.index")
        data = bytearray(zf.read("musicnn/MSD_musicnn/.data-00000-of-00001"))
    output_layer = lambda name: name == "dense_1/kernel"  # noqa: E731
    assert read_bundle(index, bytes(data), output_layer)["dense_1/kernel"].shape == (200, 50)
    data[read_index(index)["dense_1/kernel"]["offset"] + 123] ^= 0x01
    with pytest.raises(BundleError, match="dense_1/kernel: checksum mismatch"):
        read_bundle(index, bytes(data), output_layer)


def test_converted_weights_are_reused_without_the_wheel(musicnn_cache, tmp_path, monkeypatch):
    """Once converted, loading needs neither the wheel nor the network."""
    cache = tmp_path / "cache"
    target = weights_path("MSD_vgg", cache)
    target.parent.mkdir(parents=True)
    shutil.copy(weights_path("MSD_vgg", musicnn_cache), target)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    net = load_musicnn("MSD_vgg", cache)
    assert not (pretrained_folder(cache) / MUSICNN_WHEEL.filename).exists()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 96, PATCH_FRAMES)).embedding.shape == (1, 256)


def test_damaged_converted_weights_are_one_line(tmp_path):
    target = weights_path("MSD_musicnn", tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"cut short")
    with pytest.raises(UserError, match=r"MSD_musicnn\.v1\.pt: not readable converted weights .* delete it"):
        load_musicnn("MSD_musicnn", tmp_path)


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    placed = tmp_path / "wheels"
    placed.mkdir()
    (placed / MUSICNN_WHEEL.filename).write_bytes(b"not the released wheel")
    monkeypatch.setenv(WHEELS_ENV, str(placed))
    with pytest.raises(UserError, match=r"SHA-256 .* is not that of musicnn-0\.1\.0"):
        fetch_wheel(MUSICNN_WHEEL, tmp_path / "cache")


def test_a_wheel_placed_by_hand_is_used(musicnn_cache, tmp_path, monkeypatch):
    placed = tmp_path / "wheels"
    placed.mkdir()
    shutil.copy(pretrained_folder(musicnn_cache) / MUSICNN_WHEEL.filename, placed)
    monkeypatch.setenv(WHEELS_ENV, str(placed))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert fetch_wheel(MUSICNN_WHEEL, tmp_path / "cache") == placed / MUSICNN_WHEEL.filename


def test_without_network_the_command_says_how_to_place_the_wheel(tmp_path, monkeypatch, capsys):
    """No index reachable: exit 2 and one line naming the pip command and the folder; no traceback."""
    for name, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}.items():
        monkeypatch.setenv(name, value)  # pip, run by the command, sees no index and no local wheels
    monkeypatch.delenv(WHEELS_ENV, raising=False)
    with pytest.raises(SystemExit) as stopped:
        pretrained.main(["fetch", "musicnn", "--backbone", "MSD_musicnn", "--cache-dir", str(tmp_path)])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and not captured.out, captured.err
    assert lines[0].startswith("error: cannot download musicnn==0.1.0 from the package index")
    assert f"pip download --no-deps musicnn==0.1.0 -d {pretrained_folder(tmp_path)}" in lines[0]
    assert WHEELS_ENV in lines[0]


def test_fetch_command_reports_each_backbone(musicnn_cache, capsys):
    pretrained.main(["fetch", "musicnn", "--cache-dir", str(musicnn_cache)])
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == list(BACKBONES)
    assert "787,159 parameters" in out and "licence ISC" in out and "non-commercial" in out


def _tensorflow_python() -> str | None:
    """A Python that imports TensorFlow and librosa: ``$METALCORE_TF_PYTHON``, else this one."""
    python = os.environ.get("METALCORE_TF_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import tensorflow, librosa"], capture_output=True)
    return python if probe.returncode == 0 else None


@pytest.mark.slow
def test_reference_recomputed_under_tensorflow_matches_fixture_and_port(musicnn_cache, tmp_path):
    """Rerun the original models under TensorFlow; the stored fixture and the port both agree with it."""
    python = _tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow and librosa cannot be imported here; set METALCORE_TF_PYTHON to a Python that has them")
    wheel = pretrained_folder(musicnn_cache) / MUSICNN_WHEEL.filename
    out = tmp_path / "reference.npz"
    done = subprocess.run([python, str(REFERENCE_SCRIPT), str(wheel), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh, stored = dict(np.load(out)), dict(np.load(REFERENCE.FIXTURE))
    assert fresh.keys() == stored.keys()
    for key in stored:
        np.testing.assert_allclose(fresh[key], stored[key], rtol=1e-5, atol=1e-5, err_msg=key)
    assert max(_compare(fresh, musicnn_cache).values()) < TOLERANCE


def _compose(tmp_path: Path, *overrides: str):
    return train_config(*overrides, f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}")


def test_features_musicnn_selects_the_frontend_and_refuses_other_settings(tmp_path):
    """``features=musicnn`` builds the front-end the configs' networks read; other rates or sizes are one line."""
    from metalcore.training.config import make

    cfg = _compose(tmp_path, "features=musicnn", "model=cnn", "data.sample_rate=16000", "data.channels=1")
    frontend, net = make(cfg.features), make(cfg.model, num_classes=2)
    assert isinstance(frontend, MusicnnFrontend) and frontend.frames(48000) == 188
    with torch.no_grad():
        assert net(frontend(torch.randn(2, 1, 48000) * 0.1)).shape == (2, 2)  # 3 s through a network of ours
    with pytest.raises(UserError, match=r"^data\.sample_rate=44100: musicnn's weights were trained on 16000 Hz"):
        make(_compose(tmp_path, "features=musicnn").features)
    with pytest.raises(UserError, match=r"^features\.n_fft=1024: musicnn's weights were trained with 512"):
        make(_compose(tmp_path, "features=musicnn", "data.sample_rate=16000", "features.n_fft=1024").features)
