"""Per-dataset training defaults: conf/recipe/<data>.yaml is selected by the data choice."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys_lab.runners.train import _instantiate_all, build
from recsys_lab.tasks.optim import PlateauDecay
from tests.conftest import compose_train
from tests.data.rawfiles import data_overrides

pytestmark = pytest.mark.usefixtures("hydra_ctx")


def resolved(tmp_path, *overrides):
    return OmegaConf.to_container(compose_train(tmp_path, *overrides), resolve=True)


@pytest.mark.parametrize("model", ["dnn", "deepfm", "dcnv2"])
def test_movielens_selects_its_recipe(tmp_path, model):
    c = resolved(tmp_path, "data=movielens", f"model={model}")
    assert c["data"]["batch_size"] == 512 and c["trainer"]["max_epochs"] == 10
    assert c["model"]["hidden_units"] == [400, 400, 400] and c["model"]["dropout"] == 0.25
    assert c["embedding"]["dim"] == 32 and c["task"]["optimizer"]["lr"] == 5e-4
    stop = c["callbacks"]["early_stopping"]
    assert (
        stop["_target_"].endswith("EarlyStopping") and stop["monitor"] == "val/auc" and stop["patience"] == 2
    )
    assert c["callbacks"]["model_checkpoint"]["monitor"] == "val/auc"  # the best epoch is tested
    sched = c["task"]["scheduler"]
    assert sched["_target_"] == "recsys_lab.tasks.optim.PlateauDecay"
    assert (sched["monitor"], sched["factor"], sched["embedding"]) == ("val/auc", 0.1, True)
    assert (
        c["task"]["sparse_optimizer"]["lr"] == 3e-3 and c["task"]["sparse_optimizer"]["weight_decay"] == 2e-4
    )


def test_synthetic_defaults_are_unchanged(tmp_path):
    c = resolved(tmp_path)  # data=synthetic, model=dcnv2
    assert c["data"]["_target_"].endswith("SyntheticDataModule") and "recipe" not in c
    assert c["data"]["batch_size"] == 1024 and c["trainer"]["max_epochs"] == 3
    assert c["model"]["hidden_units"] == [256, 128] and c["model"]["dropout"] == 0.0
    assert c["embedding"]["dim"] == 16 and c["task"]["optimizer"]["lr"] == 1e-3
    assert set(c["callbacks"]) == {
        "model_checkpoint",
        "rich_progress_bar",
        "throughput",
        "step_checkpoint",
        "divergence",
        "rng_state",
        "adaptive_threads",
    }  # fmt: skip  (callbacks/default.yaml: no early stopping)
    assert c["task"]["scheduler"] is None
    assert c["task"]["sparse_optimizer"] == {
        "_target_": "recsys_lab.tasks.optim.RowWiseSparseAdam", "_partial_": True, "lr": 1.0e-3,
    }  # fmt: skip
    for model in ("dnn", "deepfm", "din"):
        assert resolved(tmp_path, f"model={model}")["model"]["hidden_units"] == [256, 128]


def test_command_line_experiments_and_debug_win_over_the_recipe(tmp_path):
    c = resolved(
        tmp_path, "data=movielens", "trainer.max_epochs=3", "model.hidden_units=[64]", "data.batch_size=512"
    )
    assert (c["trainer"]["max_epochs"], c["model"]["hidden_units"], c["data"]["batch_size"]) == (3, [64], 512)
    c = resolved(tmp_path, "data=movielens", "experiment=dnn_cosine")
    assert c["task"]["scheduler"]["_target_"].endswith("CosineAnnealingLR")
    assert resolved(tmp_path, "data=movielens", "debug=tiny")["trainer"]["max_epochs"] == 1
    off = resolved(tmp_path, "data=movielens", "~recipe")
    assert (off["data"]["batch_size"], off["trainer"]["max_epochs"], off["task"]["scheduler"]) == (
        4096,
        3,
        None,
    )
    assert off["model"]["hidden_units"] == [256, 128] and "early_stopping" not in off["callbacks"]
    assert off["embedding"]["dim"] == 16 and off["model"]["dropout"] == 0.0


@pytest.mark.parametrize("model", ["dcnv2", "rankmixer", "din"])
def test_the_recipe_instantiates_with_models_with_and_without_an_mlp(tmp_path, model):
    cfg = compose_train(
        tmp_path,
        "data=movielens",
        f"model={model}",
        "debug=fast_dev_run",
        *data_overrides("movielens", tmp_path),
    )
    _, _, task = build(cfg)
    callbacks = _instantiate_all(cfg.callbacks)
    assert any(type(cb).__name__ == "EarlyStopping" for cb in callbacks)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    assert trainer is not None
    _, schedulers = task.configure_optimizers()
    assert len(schedulers) == 2 and all(isinstance(s, PlateauDecay) for s in schedulers)  # dense + embedding
