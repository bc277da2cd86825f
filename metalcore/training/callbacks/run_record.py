"""The run record: ``metrics.json``, ``test_tracks.csv``, ``config.yaml`` and TensorBoard's hparams,
written when the test ends.

``metrics.json`` is what reports, sweeps and notebooks read (final test scores per clip and per
track with their intervals, the calibration, the validation scores of the tested checkpoint, split
sizes, the environment); ``config.yaml`` is the configuration as used, every interpolation
resolved. This callback computes nothing: the intervals and the temperature come from the module's
test end (``GenreClassifier.trust``), and the run logs them and stores the temperature whether or
not this callback is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from metalcore.core.environment import environment
from metalcore.core.files import write_json, write_text
from metalcore.scoring.per_track import TEST_TRACKS, clip_rows, write_tracks
from metalcore.training.callbacks.timings import timings

HPARAM_GROUPS = ("data", "features", "augment", "model", "module", "trainer", "seed")


def validation_scores(trainer: Trainer) -> dict[str, float]:
    """The ``val/...`` values logged by the last validation run (the tested checkpoint's, after ``validate``)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def flat_hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """The swept and tuned settings as flat scalars, for TensorBoard's hparams view."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not k.startswith("_") and k not in ("output_dir", "cache_dir", "default_root_dir"):
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif prefix.split(".")[0] in HPARAM_GROUPS:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", config)
    return flat


class RunRecord(Callback):
    """Writes the run's record into ``output_dir`` on rank 0 once the test has run.

    ``config`` is the run's configuration, resolved, as plain containers (``metalcore.train``
    passes it in); without it no ``config.yaml`` and no hparams are written.
    """

    def __init__(self, output_dir: str, seed: int | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.output_dir, self.seed, self.config = Path(output_dir), seed, config
        self.val: dict[str, float] = {}

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val = validation_scores(trainer)

    def metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What ``metrics.json`` holds."""
        checkpoint = trainer.checkpoint_callback
        return {
            "classes": pl_module.classes,
            "seed": self.seed,
            # test scores with their 95 % intervals, the bootstrap settings, the fitted temperature
            **pl_module.trust,
            "counts": trainer.datamodule.counts() if trainer.datamodule is not None else None,
            "epochs": trainer.current_epoch,
            "best_checkpoint": checkpoint.best_model_path if checkpoint else "",
            "monitor": {"metric": checkpoint.monitor, "best": float(checkpoint.best_model_score)}
            if checkpoint and checkpoint.best_model_score is not None
            else None,
            "val": self.val,
            "timing": timings(trainer),  # seconds per epoch, clips/s, fit and test wall time, peak memory
            # the software (versions, FFmpeg, CUDA, commit), then what .hydra/config.yaml leaves to
            # interpolation (precision "auto", devices) as it was used
            "environment": {
                **environment(),
                "precision": str(trainer.precision),
                "accelerator": type(trainer.accelerator).__name__,
                "devices": trainer.num_devices,
                "threads": torch.get_num_threads(),
                "nodes": trainer.num_nodes,
            },
        }

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = self.metrics(trainer, pl_module)  # on every rank: counts() and the checkpoint agree there
        if not trainer.is_global_zero:
            return
        write_json(self.output_dir / "metrics.json", metrics)
        datamodule = trainer.datamodule
        rows = clip_rows(
            datamodule.tracks("test"), datamodule.durations("test"), pl_module.classes, pl_module.held_out["test"]
        )
        write_tracks(self.output_dir / TEST_TRACKS, rows, pl_module.classes)
        if self.config is None:
            return
        write_text(self.output_dir / "config.yaml", yaml.safe_dump(dict(self.config), sort_keys=False))
        if trainer.logger:
            finals = {
                f"hparams/test_{level}_{name}": value
                for level in ("clip", "track")
                for name, value in metrics["test"][level].items()
                if isinstance(value, float)
            }
            trainer.logger.log_hyperparams(flat_hparams(self.config), metrics=finals)
            trainer.logger.finalize("success")  # flush now: the last job of a sweep would exit with them unwritten
