"""Reference outputs of the original musicnn models, computed under TensorFlow, for the port's parity test.

Runs in a separate environment with TensorFlow and librosa (musicnn itself pins numpy<1.17 and cannot
be installed beside a current TensorFlow, so its code is not imported: each model's graph is restored
from the ``.meta`` file shipped in the wheel, and its checkpoint read by prefix, since the shipped
``checkpoint`` file names the author's machine):

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu librosa
    pip download --no-deps musicnn==0.1.0 -d /tmp/wheel
    /tmp/tfenv/bin/python tests/reference/musicnn_reference.py /tmp/wheel/musicnn-0.1.0-py3-none-any.whl [OUT.npz]

It writes ``tests/reference/musicnn_reference.npz``: for each backbone, the tags, logits and embedding
(and MSD_musicnn's pooled features) of fixed log-Mel patches, and of fixed waveforms passed through
musicnn's own front-end (``batch_data``: librosa Mel, float16, ``log10(10000 x + 1)``). The inputs
are formulas (``reference_inputs``), not stored, so the fixture stays a few tens of KB; the test
imports the same function. Nothing here needs metalcore.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).with_name("musicnn_reference.npz")
BACKBONES = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
SAMPLE_RATE, PATCH_FRAMES, N_MELS = 16000, 187, 96
EDGE_FRAMES = (0, 1, 2, 93, 185, 186, 187)  # log-Mel frames stored to check the front-end, padding included


def reference_inputs() -> tuple[np.ndarray, np.ndarray]:
    """``(patches (3, 187, 96) float32, waveforms (2, 48000) float32)``, the same on every machine.

    The patches span musicnn's input range (0 to about 4); the waveforms are 3 s at 16 kHz of a
    chord with vibrato over a deterministic noise, and of plucked decaying tones with a kick.
    """
    t, f = np.meshgrid(np.arange(PATCH_FRAMES, dtype=np.float64), np.arange(N_MELS, dtype=np.float64), indexing="ij")
    patches = np.stack(
        [
            2.0 + 1.5 * np.sin(0.37 * t + 0.11 * f) * np.cos(0.05 * f),
            np.clip(3.5 - f / 30.0 + 0.8 * np.sin(0.9 * t) * (f < 40), 0, None),
            1.0 + np.abs(np.sin(1.3 * t * f / 97.0)) * 2.5,
        ]
    ).astype(np.float32)
    n = np.arange(3 * SAMPLE_RATE, dtype=np.float64)
    s = n / SAMPLE_RATE
    noise = np.sin(n * 12.9898 + np.sin(n * 78.233) * 43758.5453)  # a hash, not a random generator
    chord = sum(np.sin(2 * np.pi * hz * s + 0.5 * np.sin(2 * np.pi * 5.0 * s)) for hz in (220.0, 277.2, 329.6, 440.0))
    beat = (s * 4) % 1.0
    plucks = np.sin(2 * np.pi * (110.0 + 55.0 * np.floor(s * 4)) * s) * np.exp(-6 * beat)
    kick = np.sin(2 * np.pi * 55.0 * beat / (1 + 8 * beat)) * np.exp(-20 * beat)
    waveforms = np.stack([0.05 * chord + 0.02 * noise, 0.15 * plucks + 0.2 * kick + 0.01 * noise]).astype(np.float32)
    return patches, waveforms


def musicnn_logmel(waveform: np.ndarray) -> np.ndarray:
    """musicnn 0.1.0's ``batch_data`` front-end, on an array already at 16 kHz: ``(frames, 96)`` float32.

    ``pad_mode="reflect"`` is librosa's padding before 0.10, the one musicnn was trained and shipped
    with. musicnn casts the Mel power to float16, then computes ``np.log10(10000 * x + 1)``: under the
    NumPy it pins (<1.17, value-based casting) ``10000 * float16`` promotes to float32, while NumPy 2
    would keep float16 and overflow above 6.55, so the promotion is written out here.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=waveform, sr=SAMPLE_RATE, hop_length=256, n_fft=512, n_mels=N_MELS, pad_mode="reflect"
    ).T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def run_model(folder: Path, backbone: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    """The original graph of ``backbone`` on ``patches`` (n, 187, 96): tags, embedding, pooled."""
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    meta = tf.compat.v1.MetaGraphDef()
    meta.ParseFromString((folder / backbone / ".meta").read_bytes())
    for node in meta.graph_def.node:  # gradient nodes carry shapes newer TensorFlow refuses; inference needs none
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        saver.restore(sess, str(folder / backbone) + "/")
        vgg = backbone.endswith("_vgg")
        names = {
            "tags": "model/Sigmoid:0",
            "logits": "model/dense/BiasAdd:0" if vgg else "model/dense_1/BiasAdd:0",
            "embedding": "model/Flatten/flatten/Reshape:0" if vgg else "model/batch_normalization_10/batchnorm/add_1:0",
        }
        if not vgg:
            names["pooled"] = "model/Flatten/flatten/Reshape:0"
        fetched = sess.run(
            {key: graph.get_tensor_by_name(name) for key, name in names.items()},
            feed_dict={"model/Placeholder:0": patches, "model/Placeholder_2:0": False},
        )
    return {key: np.asarray(value, dtype=np.float32) for key, value in fetched.items()}


def main(wheel: str, output: Path = FIXTURE) -> None:
    patches, waveforms = reference_inputs()
    logmels = np.stack([musicnn_logmel(w) for w in waveforms])  # (2, 188, 96)
    fixture = {"logmel_frames": np.asarray(EDGE_FRAMES), "logmel": logmels[:, list(EDGE_FRAMES)]}
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp, [name for name in zf.namelist() if name.startswith("musicnn/")])
        folder = Path(tmp) / "musicnn"
        for backbone in BACKBONES:
            for source, inputs in (("patches", patches), ("audio", logmels[:, :PATCH_FRAMES])):
                for key, value in run_model(folder, backbone, inputs).items():
                    if key != "pooled" or backbone == "MSD_musicnn":  # one architecture's pooling is enough
                        fixture[f"{backbone}/{source}/{key}"] = value
    np.savez_compressed(output, **fixture)
    print(f"wrote {output} ({Path(output).stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
