"""``python -m recsys_lab.scaling study=<name> [mode=run|report|commands] [overrides=[...]]``."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from recsys_lab.runners.stage import apply_resume_argv, route_framework_logs
from recsys_lab.scaling.study import run_study
from recsys_lab.train import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="scaling")
def _main(cfg: DictConfig) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    route_framework_logs()
    run_study(cfg)


def main() -> None:
    """``resume=<study dir>`` re-runs a study with the overrides it was started with."""
    apply_resume_argv("out_dir")
    _main()


if __name__ == "__main__":
    main()
