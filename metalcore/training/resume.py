"""Resuming an interrupted run: a resume checks first.

``last.ckpt`` is written by ``metalcore.training.callbacks.last_checkpoint``; how a stop signal
ends a run is ``metalcore.training.stops``. ``resume_point``
checks a ``ckpt_path`` against the run's configuration before anything is built or written, so a
resume that cannot work changes nothing of the earlier run; ``forget_after`` drops the TensorBoard
events the resumed run will write again.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from metalcore.core.errors import UserError
from metalcore.core.files import atomic_file
from metalcore.models.spec import ModelSpec
from metalcore.models.weights import check_checkpoint


def resume_point(
    ckpt_path: str | None, checkpoints: Path, model: dict[str, Any], features: dict[str, Any]
) -> tuple[Path, int] | None:
    """The checkpoint to resume from and its logger step, or None; UserError before anything is written.

    ``last`` means ``<checkpoints>/last.ckpt``. The file must be a metalcore training checkpoint whose
    model and front-end configs are the ones this run composes: a resume with other settings would
    fail inside Lightning with a raw state_dict error, after Hydra and the loggers touched the run.
    """
    if ckpt_path is None:
        return None
    path = checkpoints / "last.ckpt" if str(ckpt_path) == "last" else Path(ckpt_path).expanduser()
    if str(ckpt_path) == "last" and not path.is_file():
        raise UserError(
            f"ckpt_path=last: no last.ckpt in {checkpoints}; to resume an earlier run give its folder "
            f"(hydra.run.dir=<run folder> ckpt_path=last) or the file (ckpt_path=<run>/checkpoints/last.ckpt)"
        )
    if path.is_dir():
        raise UserError(f"ckpt_path={ckpt_path} is a folder; give a .ckpt file, or ckpt_path=last with hydra.run.dir")
    if not path.is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # else torch's message talks of _use_new_zipfile_serialization
        raise UserError(
            f"ckpt_path={ckpt_path}: not a checkpoint: PyTorch writes a zip archive and this file is not one "
            "(a text file, or the start of one cut off)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # not a torch file at all, truncated, a foreign pickle
        raise UserError(
            f"ckpt_path={ckpt_path}: not a readable checkpoint ({type(err).__name__}: "
            f"{(str(err).strip().splitlines() or [''])[0][:160]})"
        ) from None
    raw = (checkpoint.get("hyper_parameters") or {}).get("spec") if isinstance(checkpoint, dict) else None
    if raw is None or not isinstance(checkpoint.get("loops"), dict):
        raise UserError(
            f"ckpt_path={ckpt_path}: not a checkpoint of python -m metalcore.train (no model spec or training state)"
        )
    try:
        spec = ModelSpec.from_dict(raw)  # the one reader of a checkpoint's spec, old layout included
    except ValueError as err:
        raise UserError(f"ckpt_path={ckpt_path}: not a checkpoint of python -m metalcore.train ({err})") from None
    recorded = {"model": {k: v for k, v in spec.model.items() if k != "num_classes"}, "features": spec.features}
    differences = [
        f"{group}.{key}={recorded[group].get(key, '(not set)')} there, {configured.get(key, '(not set)')} here"
        for group, configured in (("model", model), ("features", features))
        for key in sorted(set(recorded[group]) | set(configured))
        if recorded[group].get(key) != configured.get(key)
    ]
    if differences:
        raise UserError(
            f"ckpt_path={ckpt_path} was trained with other settings ({'; '.join(differences[:4])}"
            f"{'; ...' if len(differences) > 4 else ''}): resume with the overrides of the run that wrote it "
            f"(its .hydra/overrides.yaml)"
        )
    fit_loop = checkpoint["loops"].get("fit_loop", {})
    step = fit_loop.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", checkpoint.get("global_step", 0))
    return path, int(step)


def check_weights(path: Path, classes: list[str], module: torch.nn.Module) -> None:
    """The checkpoint's content (its recorded digest, finite weights), classes and tensor shapes against
    the module built for this run (UserError)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    check_checkpoint(checkpoint, path)
    recorded = ModelSpec.from_dict(checkpoint["hyper_parameters"]["spec"]).classes  # checked by resume_point
    if recorded != list(classes):
        raise UserError(f"ckpt_path={path} was trained on classes {recorded}; data.root has {list(classes)}")
    ours = module.state_dict()
    theirs = checkpoint["state_dict"]
    shapes = [{k: tuple(v.shape) for k, v in weights.items()} for weights in (ours, theirs)]
    wrong = sorted(k for k in set(shapes[0]) | set(shapes[1]) if shapes[0].get(k) != shapes[1].get(k))
    if wrong:
        raise UserError(f"ckpt_path={path}: its weights do not fit the configured model ({', '.join(wrong[:3])})")


def forget_after(log_dir: Path, step: int) -> int:
    """Drop the events at ``step`` and later from TensorBoard files in ``log_dir``; how many were dropped.

    The resumed run logs those steps again (the epoch a ``kill -9`` cut short is run anew), and
    TensorBoard would show both. Each file is rewritten atomically.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for events in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(events)).Load())
        keep = [r for r in records if Event.FromString(r).step < step or not Event.FromString(r).summary.value]
        if len(keep) < len(records):
            dropped += len(records) - len(keep)
            with atomic_file(events) as f:
                writer = RecordWriter(f)
                for record in keep:
                    writer.write(record)
    return dropped
