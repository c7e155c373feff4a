"""Fixtures of the runner tests: tiny trained runs (one per module) and runner configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from recsys_lab.runners.train import CONFIG_DIR, run
from tests.conftest import compose_train

os.environ.setdefault("WANDB_MODE", "offline")

TINY = ("debug=tiny", "logger=none", "num_threads=1", "callbacks.rich_progress_bar=null")


def train_tiny(folder: Path, *overrides: str) -> tuple[dict[str, Any], Path]:
    """Train a ``debug=tiny`` run in ``folder/run``; return its metrics and best checkpoint."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            metrics = run(compose_train(folder, *TINY, *overrides))
    finally:
        GlobalHydra.instance().clear()
    ckpt = folder / "run" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return metrics, ckpt


def runner_config(name: str, out: Path, *overrides: str) -> DictConfig:
    """Compose ``conf/<name>.yaml`` (``eval``, ``predict``, ``export``) writing into ``out``."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=name, overrides=[*overrides, f"paths.log_dir={out}"])
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "run")
    return cfg
