"""Hand-edited or forged checkpoints are refused with one line instead of crashing or labelling wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import read_metrics

from metalcore.core.errors import UserError
from metalcore.inference.checkpoint import Classifier

EDITS = {
    "one class": (lambda spec: spec.update(classes=["metal"]), r"classes \['metal'\] \(a classifier has two"),
    "more names than outputs": (
        lambda spec: spec.update(classes=["black", "death", "thrash"]),
        r"model.num_classes=2 but there are 3 classes",
    ),
    "5 channels": (lambda spec: spec.update(channels=5), r"channels=5 \(1 or 2\)"),
    "mono for a stereo network": (
        lambda spec: spec.update(channels=1),
        r"is built for \(num_classes, in_channels, n_mels\) = \(2, 2, \d+\), but the data and front-end give \(2, 1,",
    ),
    "a sample rate of 1 Hz": (lambda spec: spec.update(sample_rate=1), r"sample_rate=1 \(an integer from 1000 to"),
}


@pytest.fixture(scope="module")
def original(trained_run) -> dict:
    return torch.load(read_metrics(trained_run)["best_checkpoint"], map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", EDITS)
def test_a_spec_that_does_not_fit_the_network_is_refused(tmp_path, original, name):
    edit, message = EDITS[name]
    forged = copy.deepcopy(original)
    edit(forged["hyper_parameters"]["spec"])
    torch.save(forged, tmp_path / "forged.ckpt")
    with pytest.raises(UserError, match=message) as err:
        Classifier.from_checkpoint(tmp_path / "forged.ckpt", "cpu")
    assert "\n" not in str(err.value)


def test_a_folder_given_as_the_checkpoint_says_so(trained_run):
    with pytest.raises(UserError, match=r"is a folder, not a checkpoint; give a .ckpt file \(e.g. .*\.ckpt\)"):
        Classifier.from_checkpoint(Path(trained_run), "cpu")


def test_evaluate_on_one_class_reports_what_is_defined_as_standard_json(tmp_path, trained_run, demo_root, capsys):
    """A folder of metal tracks only: accuracy is defined, AUROC is not; metrics.json holds null, not NaN."""
    import json
    import shutil

    from metalcore import evaluate

    shutil.copytree(demo_root / "metal", tmp_path / "lib" / "metal")
    checkpoint = read_metrics(trained_run)["best_checkpoint"]
    argv = [checkpoint, "--data-root", str(tmp_path / "lib"), "--output-dir", str(tmp_path / "eval")]
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    text = (tmp_path / "eval" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert metrics["track"]["acc"] > 0.5 and metrics["track"]["auroc"] is None
    assert "auroc n/a" in capsys.readouterr().out
