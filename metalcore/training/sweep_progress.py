"""A multirun that says how far it is: Hydra's callback (``hydra.callbacks``), loaded by Hydra only.

``SweepProgress`` (``hydra.callbacks`` in ``conf/hydra/default.yaml``) writes "job i of N started",
"job i of N finished in ... (metric, seconds per epoch)" and the sweep's estimated time left, to the
console, each job's ``train.log`` and ``sweep.log`` in the sweep folder. That file is also what the
estimate counts finished jobs from: parallel launchers (joblib, SLURM) run jobs in processes that
share nothing else.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from metalcore.core.sweep_config import sweep_size, swept_keys
from metalcore.training.callbacks.epoch_line import clock

log = logging.getLogger("metalcore.sweep")
LOG_NAME = "sweep.log"
DONE = re.compile(r"\bjob \d+ of \S+ (finished|failed)\b")


class SweepProgress(Callback):
    """Job lines and the sweep's time left; silent in a single run (Hydra calls job hooks there too)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.keys: list[str] = []  # the swept keys, shown in a job's first line
        self.started: float | None = None  # wall clock: jobs may run in other processes or on other nodes
        self._job_started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # not the whole hydra node: its job fields (the sweep's subdir) exist only in a job
        hydra = {k: OmegaConf.to_container(config.hydra[k], resolve=True) for k in ("sweeper", "overrides")}
        self.total, self.keys = sweep_size(hydra), swept_keys(hydra)
        self.started = time.time()
        folder = Path(config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LOG_NAME).write_text("")  # a sweep run again into the same folder counts afresh
        self._say(config, f"sweep of {self.total or 'an unknown number of'} jobs started in {folder}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self._job_started = time.monotonic()
        overrides = [o for o in config.hydra.overrides.task if o.split("=", 1)[0] in self.keys]
        self._say(config, f"{self._job(config)} started: {' '.join(overrides) or 'no swept overrides'}")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        seconds = time.monotonic() - self._job_started
        if job_return.status == JobStatus.COMPLETED:
            what = f"finished in {clock(seconds)} ({self._scores(config, job_return._return_value)})"
        else:
            error = str(job_return._return_value).splitlines() or [""]
            what = f"failed after {clock(seconds)}: {type(job_return._return_value).__name__}: {error[0]}"
        self._say(config, f"{self._job(config)} {what}")
        if (summary := self._eta(config)) is not None:
            self._say(config, summary)

    # -- pieces ------------------------------------------------------------------------------------
    def _job(self, config: DictConfig) -> str:
        return f"job {config.hydra.job.num + 1} of {self.total or '?'}"

    @staticmethod
    def _scores(config: DictConfig, value: Any) -> str:
        """The optimised metric's value and the job's seconds per epoch (from its metrics.json)."""
        parts = []
        if config.get("optimized_metric") and isinstance(value, (int, float)):
            parts.append(f"{config.optimized_metric} {value:.4f}")
        try:
            timing = json.loads((Path(config.hydra.runtime.output_dir) / "metrics.json").read_text())["timing"]
            parts.append(f"{timing['epoch_s']:.1f} s per epoch")
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return ", ".join(parts) or "no score"

    def _eta(self, config: DictConfig) -> str | None:
        """``2 of 4 jobs done in 0:01:02, about 0:01:02 left``: the pace of the sweep so far, over the jobs left."""
        try:
            done = len(DONE.findall((Path(config.hydra.sweep.dir) / LOG_NAME).read_text()))
        except OSError:
            return None
        if not done or self.started is None:
            return None
        elapsed = time.time() - self.started
        line = f"sweep: {done} of {self.total or '?'} jobs done in {clock(elapsed)}"
        if self.total:
            line += f", about {clock(elapsed / done * max(self.total - done, 0))} left"
        return line

    @staticmethod
    def _say(config: DictConfig, message: str) -> None:
        log.info("%s", message)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(Path(config.hydra.sweep.dir) / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(f"[{stamp}] {message}\n")  # one write per line: appends from parallel jobs stay whole
