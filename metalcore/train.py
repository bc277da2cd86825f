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
from omegaconf import DictConfig, OmegaConf

from metalcore.data.datamodule import MusicDataModule
from metalcore.errors import UserError
from metalcore.files import write_json
from metalcore.module import GenreClassifier

log = logging.getLogger("metalcore.train")


def best_precision() -> str:
    """bf16 mixed precision where CUDA supports it, fp16 mixed on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


OmegaConf.register_new_resolver("best_precision", best_precision, replace=True)


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
    datamodule.prepare_data()
    frontend = make(cfg.features)
    frontend.check_segment(datamodule.segment_samples)
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
    module = make(cfg.module, frontend=frontend.train(), net=net.train(), classes=datamodule.classes, spec=spec)
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
    callbacks = [make(c) for c in (cfg.get("callbacks") or {}).values()]
    logger = make(cfg.logger) if cfg.get("logger") else False
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
        log.info("test per clip:  acc %.4f  f1 %.4f", module.results["clip"]["acc"], module.results["clip"]["f1"])
        log.info("test per track: acc %.4f  f1 %.4f", module.results["track"]["acc"], module.results["track"]["f1"])
        log.info("outputs in %s", output_dir)
    return metrics


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return optimized_value(cfg, train(cfg))
    except UserError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
