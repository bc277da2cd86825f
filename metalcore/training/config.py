"""Hydra glue shared by the entry points: building objects from config groups, and clean failures.

Library code never imports Hydra; the commands (train, prepare) build their pieces through
``make`` so that a bad key or an impossible value reaches the user as one line naming the group,
and run inside ``metalcore.core.errors.command(log, in_sweep())`` so that such a line ends a single
run with exit status 2 while a sweep records the job as failed and goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from metalcore.core.environment import cpu_runs_bf16
from metalcore.core.errors import UserError
from metalcore.core.files import writable_folder

CONF = Path(__file__).resolve().parents[2] / "conf"  # absolute: found whether run as __main__ or imported


def best_precision() -> str:
    """bf16 mixed precision where the hardware runs bf16 natively, fp16 mixed on older GPUs, fp32 on other CPUs.

    On a CPU with bf16 instructions a training step of the study's network takes half the time of
    fp32 (``python -m metalcore.bench --train`` times both); elsewhere bf16 would be emulated, slower.
    """
    import torch  # here, not above: decoding workers import this module and need no torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    return "bf16-mixed" if cpu_runs_bf16() else "32-true"


def direction(metric: str) -> str:
    """``maximize`` for a score, ``minimize`` for a loss: what a sweeper does with ``optimized_metric``."""
    from metalcore.scoring.metrics import higher_is_better  # torchmetrics only when a sweeper asks

    return "maximize" if higher_is_better(metric) else "minimize"


def config_subdir(ckpt_path: Any, now: str) -> str:
    """Where Hydra saves the composed config: ``.hydra``, or ``.hydra/resume-<now>`` when resuming.

    A resume runs in the earlier run's folder; its own record goes beside that run's, which stays as
    it was, whether the resume succeeds or is refused.
    """
    return ".hydra" if ckpt_path is None else f".hydra/resume-{now}"


OmegaConf.register_new_resolver("best_precision", best_precision, replace=True)
OmegaConf.register_new_resolver("direction", direction, replace=True)
OmegaConf.register_new_resolver("config_subdir", config_subdir, replace=True)


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


def in_sweep() -> bool:
    """Whether this Hydra job is one of a multirun's, where a failure must not end the sweep."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


def check_command_line(argv: Sequence[str]) -> None:
    """What Hydra would fail on with a traceback before any metalcore code runs (UserError).

    A value holding bytes that are not UTF-8 (a Latin-1 folder name) stops Hydra's override lexer;
    quoted, it passes. Hydra makes the run folder itself, so one it cannot make (below a file, on
    a read-only mount) is checked here, from the ``hydra.run.dir`` or ``hydra.sweep.dir`` given or
    the default ``outputs/`` and ``multirun/`` in the working folder.
    """
    sweep = any(arg in ("-m", "--multirun") for arg in argv)
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    folder = "multirun" if sweep else "outputs"
    for arg in argv:
        name, equals, value = arg.partition("=")
        quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
        if equals and not quoted and any("\udc80" <= c <= "\udcff" for c in value):
            raise UserError(
                f"{arg}: holds bytes that are not UTF-8, which Hydra cannot parse unquoted; "
                f"quote the value: '{name}=\"{value}\"'"
            )
        if name.lstrip("+") == key and equals:
            folder = value
    static = folder.split("${", 1)[0]  # the part before any interpolation, e.g. ${now:...}
    writable_folder(Path(static.strip("'\"") or "."), f"{key}=")
