"""Shared fixtures: Hydra composition of the project's configs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from recsys_lab.runners.stage import CONFIG_DIR

os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture
def hydra_ctx() -> Iterator[None]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def compose_train(tmp_path: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """Compose an entry config (inside ``hydra_ctx``) writing into ``tmp_path``."""
    cfg = compose(config_name=config_name, overrides=[*overrides, f"paths.log_dir={tmp_path}"])
    if "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
    return cfg
