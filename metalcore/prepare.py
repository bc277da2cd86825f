"""``python -m metalcore.prepare``: build or refresh the decoded-audio cache, then print what is in it.

Takes the training config, so ``data.root=...``, ``data.sample_rate=...`` or ``data=synthetic`` prepare
exactly the cache a training run with the same overrides reads. Training needs no separate step (its
DataModule runs the same ``prepare``); this command decodes a new library up front, over every core,
and reports tracks and hours per class, the cache's size and each file it had to skip. It ends by
splitting the library as training would, so a class left too small is reported now, not at train time.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from metalcore.core.errors import command
from metalcore.training.checks import check_config
from metalcore.training.config import CONF, check_command_line, in_sweep, make

log = logging.getLogger("metalcore.prepare")


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> None:
    with command(log, in_sweep()):
        check_config(cfg)  # the config a training run would refuse is refused here too
        datamodule = make(cfg.data)
        print(datamodule.prepare(progress=True), flush=True)
        datamodule.setup()
        counts = ", ".join(f"{name} {c['tracks']}" for name, c in datamodule.counts().items())
        print(
            f"split by {datamodule.split.group_by} (seed {datamodule.seed}): {counts} tracks; "
            f"see {cfg.paths.output_dir}/split.csv"
        )


if __name__ == "__main__":
    with command():
        check_command_line(sys.argv[1:])
    main()
