"""``python -m metalcore.train``: build everything from the Hydra config, fit, test, write metrics.json.

Thin on purpose: the data, front-end, network and LightningModule each come from their config
group; this file wires them, checks that they fit together before any training starts, and records
what the run used and scored in its output folder.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from metalcore.data.datamodule import MusicDataModule
from metalcore.errors import UserError
from metalcore.files import write_json
from metalcore.launch import local_processes, spawn
from metalcore.module import GenreClassifier
from metalcore.report import higher_is_better

log = logging.getLogger("metalcore.train")
CONF = Path(__file__).resolve().parents[1] / "conf"  # absolute: found whether run as __main__ or imported


def best_precision() -> str:
    """bf16 mixed precision where CUDA supports it, fp16 mixed on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def direction(metric: str) -> str:
    """``maximize`` for a score, ``minimize`` for a loss: what a sweeper does with ``optimized_metric``."""
    return "maximize" if higher_is_better(metric) else "minimize"


OmegaConf.register_new_resolver("best_precision", best_precision, replace=True)
OmegaConf.register_new_resolver("direction", direction, replace=True)


def make(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with the cause of a failure surfaced as one line naming the group."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, UserError):
            raise cause from None
        key = node._get_full_key(None) or "config"
        raise UserError(f"{key} ({node.get('_target_')}): {cause}") from None


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
        raise UserError(f"model ({cfg.model._target_}) cannot take a segment of "
                        f"data.segment_seconds={cfg.data.segment_seconds} with features.hop_length="
                        f"{frontend.hop_length}: {str(err).splitlines()[0]}") from None
    spec = {
        "classes": datamodule.classes,
        "data": {"sample_rate": datamodule.sample_rate, "channels": datamodule.channels,
                 "segment_seconds": cfg.data.segment_seconds},
        "features": OmegaConf.to_container(cfg.features, resolve=True),
        "model": {**OmegaConf.to_container(cfg.model, resolve=True), "num_classes": len(datamodule.classes)},
    }
    # spec goes in after instantiation: passed to instantiate, its _target_ nodes would become modules
    # pickled into the checkpoint instead of the plain configs that metalcore.inference rebuilds from.
    module = make(cfg.module, _partial_=True)(frontend=frontend.train(), net=net.train(),
                                              classes=datamodule.classes, spec=spec)
    return datamodule, module


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The swept and tuned settings as flat scalars, for TensorBoard's hparams view."""
    keep = {"data", "features", "model", "module", "trainer", "seed"}
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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write ``metrics.json``; returns what it wrote."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule, module = build(cfg)
    logger = make(cfg.logger) if cfg.get("logger") else False
    callbacks = [make(c) for c in (cfg.get("callbacks") or {}).values()]
    if not logger:  # ~logger: nothing to log learning rates to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = make(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)

    metrics = {
        "classes": datamodule.classes,
        "seed": cfg.seed,
        "test": module.results,
        "counts": datamodule.counts(),
        "epochs": trainer.current_epoch,
        "best_checkpoint": best,
        "monitor": {"metric": checkpoint.monitor, "best": float(checkpoint.best_model_score)}
        if checkpoint and checkpoint.best_model_score is not None else None,
        "val": val,
    }
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
        if logger:
            finals = {f"hparams/test_{level}_{name}": value for level in ("clip", "track")
                      for name, value in module.results[level].items() if isinstance(value, float)}
            logger.log_hyperparams(flat_hparams(cfg), metrics=finals)
            logger.finalize("success")  # flush now: the last job of a sweep would exit with them unwritten
        log.info("test per clip:  acc %.4f  f1 %.4f", module.results["clip"]["acc"], module.results["clip"]["f1"])
        log.info("test per track: acc %.4f  f1 %.4f", module.results["track"]["acc"], module.results["track"]["f1"])
        log.info("outputs in %s", output_dir)
    return metrics


def run(cfg: DictConfig) -> dict[str, Any]:
    """``train(cfg)`` here, or in one process per device for ``trainer=ddp`` (see metalcore.launch).

    The parent prepares the data once and checks the config before any process starts; rank 0
    writes metrics.json, which the parent reads back for the sweeper.
    """
    processes = local_processes(cfg.trainer.get("strategy"), cfg.trainer.get("accelerator", "auto"),
                                cfg.trainer.get("devices"))
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
    stage, _, key = name.partition("/")
    level, key = ("track", key[len("track_"):]) if key.startswith("track_") else ("clip", key)
    return metrics.get(stage, {}).get(level, {}).get(key)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    log_once()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return optimized_value(cfg, run(cfg))
    except UserError as err:
        log.error("%s", err)  # in a sweep, the job's log says why it failed (metalcore.report reads it)
        if multirun:
            raise
        sys.exit(2)
    except Exception as err:
        if multirun:
            log.exception("job failed: %s: %s", type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        raise


if __name__ == "__main__":
    # Call the imported module's main, not this __main__ copy's: launchers that pickle the task
    # function (joblib, submitit) then send a reference to metalcore.train.main instead of pickling
    # this module's functions by value (which fails on torch's submodules).
    from metalcore.train import main as imported_main

    imported_main()
