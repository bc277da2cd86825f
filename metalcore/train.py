"""``python -m metalcore.train``: build everything from the Hydra config, fit, test, write metrics.json.

Thin on purpose: ``metalcore.training.experiment`` does the work; this entry point composes the
config, keeps one log file under torchrun, and turns a configuration problem into one line.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from metalcore.core.errors import command
from metalcore.core.library_warnings import route_warnings_to_log
from metalcore.training.config import CONF, check_command_line, in_sweep
from metalcore.training.experiment import log_once, optimized_value, run

log = logging.getLogger("metalcore.train")


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    log_once()
    route_warnings_to_log()
    with command(log, in_sweep()):
        return optimized_value(cfg, run(cfg))


if __name__ == "__main__":
    # Call the imported module's main, not this __main__ copy's: launchers that pickle the task
    # function (joblib, submitit) then send a reference to metalcore.train.main instead of pickling
    # this module's functions by value (which fails on torch's submodules).
    from metalcore.train import main as imported_main

    with command():
        check_command_line(sys.argv[1:])
    imported_main()
