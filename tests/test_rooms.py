"""Where things live: each callback beside its config, the science of a run in the module, one exit.

These are the rules a newcomer relies on to find (and add) a piece: a ``conf/callbacks/<name>.yaml``
names ``metalcore.training.callbacks.<name>``; evaluating a checkpoint needs nothing from training;
library code raises ``UserError`` and only the command wrapper exits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lightning as L
import torch
import yaml
from conftest import REPO
from test_contracts import BandMeans
from torch.utils.data import DataLoader, TensorDataset

from metalcore.models.frontend import MelFrontend
from metalcore.training.module import GenreClassifier

PACKAGE = REPO / "metalcore"
CALLBACKS = PACKAGE / "training" / "callbacks"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_each_callback_config_names_the_module_of_the_same_name():
    """``conf/callbacks/*.yaml`` and ``training/callbacks/*.py`` pair one to one, by name."""
    modules = {p.stem for p in CALLBACKS.glob("*.py")} - {"__init__"}
    configs = {p.stem for p in (REPO / "conf" / "callbacks").glob("*.yaml")} - {"default"}
    assert configs == modules, "a module in training/callbacks/ that no config names, or a config without its module"
    for name in sorted(configs):
        (key, node), *others = yaml.safe_load((REPO / "conf" / "callbacks" / f"{name}.yaml").read_text()).items()
        assert key == name and not others, name
        assert node["_target_"].rsplit(".", 1)[0] == f"metalcore.training.callbacks.{name}", name


def test_evaluation_imports_nothing_from_training():
    for path in sorted((PACKAGE / "evaluation").glob("*.py")):
        assert not {m for m in imports(path) if m.startswith("metalcore.training")}, path


def test_only_the_command_wrapper_exits():
    """Library code raises UserError; ``core.errors.command`` alone turns it into an exit status."""
    exits = [p.relative_to(REPO) for p in PACKAGE.rglob("*.py") if "SystemExit" in p.read_text()]
    assert exits == [Path("metalcore/core/errors.py")]


def test_the_module_computes_intervals_and_temperature_without_any_callback(tmp_path):
    """The science of a run does not depend on which writers are configured (``~callbacks.run_record``)."""
    torch.manual_seed(0)
    audio, labels = torch.randn(24, 2, 4096), torch.arange(24) % 2
    data = DataLoader(TensorDataset(audio, labels, torch.arange(24) // 2), batch_size=8)  # 12 tracks of 2 clips
    frontend = MelFrontend(16000, n_mels=16, n_fft=512, hop_length=256)
    module = GenreClassifier(frontend, BandMeans(2, 2, 16), ["a", "b"], optimizer=torch.optim.Adam, bootstrap_seed=3)
    trainer = L.Trainer(
        max_epochs=1, callbacks=[], logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(module, data, data)
    trainer.test(module, data, verbose=False)
    trust = module.trust
    assert trust["bootstrap"] == {"unit": "track", "resamples": 1000, "level": 0.95, "seed": 3}
    low, high = trust["test"]["track"]["acc_ci95"]
    assert low <= trust["test"]["track"]["acc"] <= high
    assert trust["calibration"]["temperature"] > 0 and "test_track_ece" in trust["calibration"]
