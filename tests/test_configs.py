"""Every config in conf/ composes, and every object it names instantiates."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from recsys_lab.runners.train import CONFIG_DIR, _instantiate_all, build
from tests.conftest import compose_train
from tests.data.rawfiles import data_overrides

pytestmark = pytest.mark.usefixtures("hydra_ctx")

CONF = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# Runtime-only groups are checked by composition; the rest are instantiated too.
TRAIN_GROUPS = ["data", "model", "embedding", "task", "trainer", "logger", "callbacks", "experiment", "debug"]
CASES = [(g, o) for g in TRAIN_GROUPS for o in options(g)]
# Config groups stay in their lane: an option that needs another group's choice gets it here.
NEEDS = {
    ("model", "lum"): ["data=synthetic_seq"],
    ("task", "lum_pretrain"): ["model=lum", "data=synthetic_seq"],
    ("task", "pcf_pretrain"): ["model=pcf_gnn"],
    ("task", "exfm_student"): ["model=exfm_vm"],  # distill=aux needs its auxiliary head
}


def test_every_group_has_options():
    for group in TRAIN_GROUPS:
        assert options(group), f"conf/{group} is empty"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_train_config_composes_and_instantiates(tmp_path, group, option):
    overrides = [f"{group}={option}", *NEEDS.get((group, option), [])]
    if group != "debug":
        overrides.append("debug=fast_dev_run")  # tiny data sizes
    if group == "data":
        overrides += data_overrides(option, tmp_path)  # real datasets read small sample files
    cfg = compose_train(tmp_path, *overrides)
    if group == "trainer" and option in ("gpu", "fsdp"):
        assert cfg.trainer.accelerator == "gpu"  # no GPU here: composing is the check
        if option == "fsdp":
            assert cfg.trainer.strategy._target_.endswith("FSDPStrategy")
        return
    _datamodule, model, task = build(cfg)
    assert model.num_params() > 0
    assert task.model is model
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert trainer is not None


@pytest.mark.parametrize("sweep", options("sweep"))
def test_sweep_configs_compose(tmp_path, sweep):
    cfg = compose_train(tmp_path, f"sweep={sweep}")
    assert cfg.task_name


@pytest.mark.parametrize("pipeline", options("pipeline"))
def test_pipeline_configs_compose(tmp_path, pipeline):
    cfg = compose_train(tmp_path, f"pipeline={pipeline}", config_name="pipeline")
    assert cfg.pipeline.stages and all(s.name for s in cfg.pipeline.stages)
