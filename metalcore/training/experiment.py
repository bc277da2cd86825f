"""One training run from a composed config: build, check, fit, test; and its DDP fan-out.

The data, front-end, network, LightningModule and callbacks each come from their config group; this
module wires them and checks that they fit together before any training starts. What the run used
and scored is written by its callbacks (``conf/callbacks/``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from metalcore.core.environment import environment
from metalcore.core.errors import UserError
from metalcore.data.datamodule import MusicDataModule, check_seed
from metalcore.models.augment import Augment
from metalcore.models.base import Network, check_network
from metalcore.models.spec import ModelSpec
from metalcore.scoring.metrics import canonical
from metalcore.training.callbacks.run_record import validation_scores
from metalcore.training.checkpoint_io import stopped_when_full
from metalcore.training.checks import check_config
from metalcore.training.config import make
from metalcore.training.launch import collective_timeouts, local_processes, spawn, strategy_name
from metalcore.training.module import GenreClassifier
from metalcore.training.probe import ProbeData
from metalcore.training.resume import check_weights, forget_after, resume_point
from metalcore.training.stops import stopped_by_signal
from metalcore.uncertainty import trust
from metalcore.uncertainty.calibration import store_temperature

log = logging.getLogger("metalcore.train")


def build(cfg: DictConfig, announce: bool = True) -> tuple[MusicDataModule | ProbeData, GenreClassifier]:
    """The DataModule (with its cache prepared) and the LightningModule, checked against each other.

    ``announce=False``: the data's skipped files and headline are not logged (already said). For a
    network on a frozen backbone the DataModule serves cached clip features (``ProbeData``).
    """
    datamodule: MusicDataModule = make(cfg.data)
    datamodule.announce = announce
    frontend = make(cfg.features)
    frontend.check_segment(datamodule.segment_samples)
    datamodule.prepare_data()  # after the config checks: an impossible setting must not wait for a decode
    classes = datamodule.classes
    net = make(cfg.model, num_classes=len(classes))
    pretrained = net.load_pretrained(Path(cfg.paths.cache_dir).expanduser()) if isinstance(net, Network) else None
    frames = frontend.frames(datamodule.segment_samples)
    try:
        check_network(net, len(classes), datamodule.channels, frontend.n_mels, frames)
    except ValueError as err:
        raise UserError(
            f"model ({cfg.model._target_}) {err} (a segment of data.segment_seconds={cfg.data.segment_seconds} "
            f"with features.hop_length={frontend.hop_length} gives {frames} frames)"
        ) from None
    spec = ModelSpec(
        classes=classes,
        sample_rate=datamodule.sample_rate,
        channels=datamodule.channels,
        segment_seconds=float(cfg.data.segment_seconds),
        features=OmegaConf.to_container(cfg.features, resolve=True),
        model={**OmegaConf.to_container(cfg.model, resolve=True), "num_classes": len(classes)},
        environment=environment(),
        pretrained=pretrained,
    )
    # spec goes in after instantiation, as plain containers: passed to instantiate, its _target_ nodes would
    # become modules pickled into the checkpoint instead of the configs that metalcore.inference rebuilds from.
    augment = make(cfg.augment) if cfg.get("augment") else None
    module = make(cfg.module, _partial_=True)(
        frontend=frontend.train(), net=net.train(), classes=classes, spec=spec.to_dict(), augment=augment
    )
    if net.frozen:  # a frozen backbone: its clip features are computed once and the head trains on them
        check_no_augment(augment)
        module.on_features = True
        return ProbeData(datamodule, module.frontend, module.net), module
    return datamodule, module


def check_no_augment(augment: Augment | None) -> None:
    """A frozen probe trains on cached features, which no audio or spectrogram augmentation reaches."""
    used = [*augment.waveform, *(["mixup"] if augment.mixup else []), *augment.spectrogram] if augment else []
    if used:
        raise UserError(
            f"augment ({', '.join(used)}): a frozen probe (model.freeze=true) trains on cached clip features "
            "that augmentation cannot reach; set augment=none, or model.freeze=false to fine-tune"
        )


def make_callbacks(cfg: DictConfig) -> list[Callback]:
    """One callback per entry of ``callbacks``; an entry with a ``config`` key receives the run's
    configuration, resolved (passed after instantiation, so its ``_target_`` nodes stay plain data)."""
    used = OmegaConf.to_container(cfg, resolve=True)
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        if node is None:
            continue
        factory = make(node, _partial_=True)
        callbacks.append(factory(config=used) if "config" in node else factory())
    return callbacks


def resume(cfg: DictConfig) -> tuple[Path, int] | None:
    """``ckpt_path`` checked against this config before anything is built or written (see training.resume)."""
    return resume_point(
        cfg.get("ckpt_path"),
        Path(cfg.paths.output_dir) / "checkpoints",
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.features, resolve=True),
    )


def train(cfg: DictConfig, prepared: bool = False) -> dict[str, Any]:
    """Fit, then validate and test the best checkpoint; returns the scores a sweeper reads.

    Files (metrics.json, config.yaml, figures) are written by the callbacks in ``conf/callbacks/``.
    ``prepared``: a DDP rank started by ``run``, whose process prepared the data and logged its skipped files.
    """
    check_seed(cfg.seed)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("threads"):  # this job's share of the cores when a sweep runs several at once
        torch.set_num_threads(cfg.threads)
    start = resume(cfg)
    datamodule, module = build(cfg, announce=not prepared)
    logger = make(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = make(cfg.trainer, callbacks=make_callbacks(cfg), logger=logger)

    if start is not None:
        check_weights(start[0], datamodule.classes, module)
        if logger and trainer.is_global_zero:
            forget_after(Path(logger.log_dir), start[1])
    with stopped_when_full(Path(cfg.paths.output_dir)):
        with stopped_by_signal(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=start[0] if start else None)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            # the validation scores of the model that is tested (and that a sweeper optimises), not the last epoch's
            if best:
                trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=False)
            val = validation_scores(trainer)
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        if trainer.is_global_zero and best:  # predict, evaluate and export read it from the checkpoint they get
            store_temperature(Path(best), module.trust["calibration"])
    if trainer.is_global_zero:
        for line in trust.log_lines(module.trust):
            log.info("%s", line)
        log.info("outputs in %s", cfg.paths.output_dir)
    return {"val": val, "test": module.results["test"]}


def run(cfg: DictConfig) -> dict[str, Any]:
    """``train(cfg)`` here, or in one process per device for ``trainer=ddp`` (see metalcore.training.launch).

    The parent prepares the data once and checks the config before any process starts; rank 0's
    RunRecord writes metrics.json, which the parent reads back for the sweeper.
    """
    check_config(cfg)
    processes = local_processes(
        cfg.trainer.get("strategy"), cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices")
    )
    if processes == 1:  # no DDP, or ranks that torchrun or srun started
        with collective_timeouts():
            return train(cfg)
    resume(cfg)
    build(cfg)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # no Hydra in the new processes
    job_logging = HydraConfig.get().job_logging
    logging_config = OmegaConf.to_container(job_logging, resolve=True) if job_logging else None
    log.info("starting %d processes for %s", processes, strategy_name(cfg.trainer.strategy))
    spawn(train, (resolved, True), processes, logging_config)  # prepared and reported here, once
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def log_once() -> None:
    """Under torchrun or srun every rank runs this entry point: only rank 0 keeps the run's log file."""
    if rank_zero_only.rank > 0:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value of ``optimized_metric`` (``val/...`` or ``test/...``) for a sweeper to optimise.

    NaN when the run could not compute it (AUROC on a split that holds one class only).
    """
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name in metrics["val"]:
        return metrics["val"][name]
    value: Any = metrics
    for part in canonical(name).split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, float) else float("nan")
