"""``python -m recsys_lab.scaling study=<name> [mode=run|report|commands] [overrides=[...]]``."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from recsys_lab.scaling.study import run_study
from recsys_lab.train import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="scaling")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    run_study(cfg)


if __name__ == "__main__":
    main()
