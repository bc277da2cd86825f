"""One training run from a composed config: build, check, fit, test, record; and its DDP fan-out.

The data, front-end, network and LightningModule each come from their config group; this module
wires them, checks that they fit together before any training starts, and records what the run used
and scored in its output folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from metalcore.core.errors import UserError
from metalcore.core.files import write_json, write_text
from metalcore.data.datamodule import MusicDataModule
from metalcore.training.config import make
from metalcore.training.launch import local_processes, spawn
from metalcore.training.metrics import canonical
from metalcore.training.module import GenreClassifier

log = logging.getLogger("metalcore.train")


def build(cfg: DictConfig) -> tuple[MusicDataModule, GenreClassifier]:
    """The DataModule (with its cache prepared) and the LightningModule, checked against each other."""
    datamodule: MusicDataModule = make(cfg.data)
    frontend = make(cfg.features)
    frontend.check_segment(datamodule.segment_samples)
    datamodule.prepare_data()  # after the config checks: an impossible setting must not wait for a decode
    net = make(cfg.model, num_classes=len(datamodule.classes))
    try:
        with torch.no_grad():
            net.eval()(frontend.eval()(torch.zeros(2, datamodule.channels, datamodule.segment_samples)))
    except RuntimeError as err:
        raise UserError(
            f"model ({cfg.model._target_}) cannot take a segment of "
            f"data.segment_seconds={cfg.data.segment_seconds} with features.hop_length="
            f"{frontend.hop_length}: {str(err).splitlines()[0]}"
        ) from None
    spec = {
        "classes": datamodule.classes,
        "data": {
            "sample_rate": datamodule.sample_rate,
            "channels": datamodule.channels,
            "segment_seconds": cfg.data.segment_seconds,
        },
        "features": OmegaConf.to_container(cfg.features, resolve=True),
        "model": {**OmegaConf.to_container(cfg.model, resolve=True), "num_classes": len(datamodule.classes)},
    }
    # spec goes in after instantiation: passed to instantiate, its _target_ nodes would become modules
    # pickled into the checkpoint instead of the plain configs that metalcore.inference rebuilds from.
    augment = make(cfg.augment) if cfg.get("augment") else None
    module = make(cfg.module, _partial_=True)(
        frontend=frontend.train(), net=net.train(), classes=datamodule.classes, spec=spec, augment=augment
    )
    return datamodule, module


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The swept and tuned settings as flat scalars, for TensorBoard's hparams view."""
    keep = {"data", "features", "augment", "model", "module", "trainer", "seed"}
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if not k.startswith("_") and k not in ("output_dir", "cache_dir", "default_root_dir"):
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif prefix.split(".")[0] in keep:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return flat


def resume_from(ckpt_path: str | None, trainer: L.Trainer) -> str | None:
    """``ckpt_path`` checked before training: a missing file or an absent ``last`` is one clear error.

    Lightning would only warn and train from scratch when ``last`` finds nothing, which is what
    happens in a new run folder.
    """
    if ckpt_path is None:
        return None
    folder = Path(trainer.checkpoint_callback.dirpath) if trainer.checkpoint_callback else None
    if ckpt_path == "last" and not (folder and (folder / "last.ckpt").is_file()):
        raise UserError(
            f"ckpt_path=last: no last.ckpt in {folder}; to resume an earlier run give its folder "
            f"(hydra.run.dir=<run folder> ckpt_path=last) or the file (ckpt_path=<run>/checkpoints/last.ckpt)"
        )
    if ckpt_path != "last" and not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write ``metrics.json``; returns what it wrote."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    datamodule, module = build(cfg)
    logger = make(cfg.logger) if cfg.get("logger") else False
    callbacks = [make(c) for c in (cfg.get("callbacks") or {}).values()]
    if not logger:  # ~logger: nothing to log learning rates to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = make(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from(cfg.get("ckpt_path"), trainer))
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    # the validation scores of the model that is tested (and that a sweeper optimises), not the last epoch's
    val = (
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=False)[0]
        if best
        else {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    )
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)

    metrics = {
        "classes": datamodule.classes,
        "seed": cfg.seed,
        "test": module.results,
        "counts": datamodule.counts(),
        "epochs": trainer.current_epoch,
        "best_checkpoint": best,
        "monitor": {"metric": checkpoint.monitor, "best": float(checkpoint.best_model_score)}
        if checkpoint and checkpoint.best_model_score is not None
        else None,
        "val": val,
        # what .hydra/config.yaml leaves to interpolation (precision "auto", paths) as it was used
        "environment": {
            "precision": str(trainer.precision),
            "accelerator": type(trainer.accelerator).__name__,
            "devices": trainer.num_devices,
            "nodes": trainer.num_nodes,
            "torch": torch.__version__,
            "lightning": L.__version__,
        },
    }
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if logger:
            finals = {
                f"hparams/test_{level}_{name}": value
                for level in ("clip", "track")
                for name, value in module.results[level].items()
                if isinstance(value, float)
            }
            logger.log_hyperparams(flat_hparams(cfg), metrics=finals)
            logger.finalize("success")  # flush now: the last job of a sweep would exit with them unwritten
        log.info("test per clip:  acc %.4f  f1 %.4f", module.results["clip"]["acc"], module.results["clip"]["f1"])
        log.info("test per track: acc %.4f  f1 %.4f", module.results["track"]["acc"], module.results["track"]["f1"])
        log.info("outputs in %s", output_dir)
    return metrics


def run(cfg: DictConfig) -> dict[str, Any]:
    """``train(cfg)`` here, or in one process per device for ``trainer=ddp`` (see metalcore.training.launch).

    The parent prepares the data once and checks the config before any process starts; rank 0
    writes metrics.json, which the parent reads back for the sweeper.
    """
    processes = local_processes(
        cfg.trainer.get("strategy"), cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices")
    )
    if processes == 1:
        return train(cfg)
    build(cfg)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # no Hydra in the new processes
    job_logging = HydraConfig.get().job_logging
    logging_config = OmegaConf.to_container(job_logging, resolve=True) if job_logging else None
    log.info("starting %d processes for %s", processes, cfg.trainer.strategy)
    spawn(train, (resolved,), processes, logging_config)
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def log_once() -> None:
    """Under torchrun or srun every rank runs this entry point: only rank 0 keeps the run's log file."""
    if rank_zero_only.rank > 0:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value of ``optimized_metric`` (``val/...`` or ``test/...``) for a sweeper to optimise."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name in metrics["val"]:
        return metrics["val"][name]
    value: Any = metrics
    for part in canonical(name).split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, float) else None
