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
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from metalcore.errors import UserError

log = logging.getLogger("metalcore.prepare")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here, not above: decoding workers re-import this module when they start, and should
    # not pay for Lightning and the models.
    from metalcore.train import make

    try:
        datamodule = make(cfg.data)
        print(datamodule.prepare(progress=True), flush=True)
        datamodule.setup()
        counts = ", ".join(f"{name} {c['tracks']}" for name, c in datamodule.counts().items())
        print(f"split by {datamodule.split.group_by} (seed {datamodule.seed}): {counts} tracks; "
              f"see {cfg.paths.output_dir}/split.csv")
    except UserError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
