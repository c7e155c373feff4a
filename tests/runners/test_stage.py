"""The stage module's atomic saves and typed runner settings (a misspelt key fails, naming it)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from recsys_lab.runners import das, lum_features, stage
from recsys_lab.runners.pipeline import PipelineError, run_pipeline
from tests.conftest import compose_train


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_atomic_saves_write_the_exact_file_and_leave_nothing_behind(tmp_path):
    stage.write_json_atomic(tmp_path / "a" / "m.json", {"b": 1.5, "a": [1, 2]})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"a": [1, 2], "b": 1.5}
    stage.savez_atomic(tmp_path / "x.npz", {"col": np.arange(3)})
    np.testing.assert_array_equal(np.load(tmp_path / "x.npz")["col"], np.arange(3))
    stage.torch_save_atomic({"w": torch.ones(2)}, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt")["w"], torch.ones(2))
    assert stage.write_metrics(tmp_path, {"test/auc": 0.7}) == tmp_path / "metrics.json"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []


def test_a_failed_atomic_save_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "m.json"
    stage.write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError, match="disk full"), stage.atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"v": 1}
    assert _leftovers(tmp_path) == []


@dataclass
class _Opts:
    path: str | None = None
    size: int = 8


def test_options_fill_defaults_and_check_names_and_types():
    cfg = OmegaConf.create({"thing": {"size": 3}})
    assert stage.options(cfg, "thing", _Opts) == _Opts(None, 3)
    assert stage.options(OmegaConf.create({}), "thing", _Opts) == _Opts()
    with pytest.raises(
        stage.OptionsError, match=r"thing\.sise is not a setting of the demo stage.*path, size"
    ):
        stage.options(OmegaConf.create({"thing": {"sise": 3}}), "thing", _Opts, "demo")
    with pytest.raises(stage.OptionsError, match="size"):
        stage.options(OmegaConf.create({"thing": {"size": "big"}}), "thing", _Opts)


@pytest.mark.usefixtures("hydra_ctx")
@pytest.mark.parametrize(
    ("runner", "override", "message"),
    [
        (das.run, "+das.chekpoint=x.ckpt", r"das\.chekpoint is not a setting of the DAS stage"),
        (das.run, "+das.last_days=two", r"das\.last_days of the DAS stage has a wrong value"),
        (das.train_foundation_model, "+exfm.stream_day=3", r"exfm\.stream_day is not a setting"),
        (lum_features.write_lum_features, "+lum_features.batchsize=8", r"lum_features\.batchsize is not"),
    ],
)
def test_a_misspelt_runner_setting_fails_at_start_naming_it(tmp_path, runner, override, message):
    cfg = compose_train(tmp_path, "debug=tiny", override)
    with pytest.raises(stage.OptionsError, match=message):
        runner(cfg)
    assert not (tmp_path / "run").exists()  # nothing ran


@pytest.mark.usefixtures("hydra_ctx")
def test_a_mistyped_pipeline_stage_fails_before_any_stage_runs(tmp_path):
    cfg = compose_train(
        tmp_path, "pipeline=warmstart", f"pipeline_dir={tmp_path}/pipe", config_name="pipeline"
    )
    with open_dict(cfg):
        cfg.pipeline.stages[1].overrides = "model=dcnv2"  # a string, not a list
    with pytest.raises(PipelineError, match="Stage 'dcnv2', key 'overrides'"):
        run_pipeline(cfg)
    assert not (tmp_path / "pipe" / "dnn").exists()


@pytest.mark.parametrize(
    ("override", "new"),
    [
        ("task.distill=aux", "task.objective.distill"),
        ("+task.rep_weight=0.5", "task.objective.rep_weight"),
        ("task.sts_stage1_fraction=0.3", "task.schedule.stage1_fraction"),
    ],
)
def test_a_moved_key_names_its_new_home(override, new):
    with pytest.raises(stage.MovedKeyError, match=new):
        stage.check_moved_keys(["model=dnn", override])
    stage.check_moved_keys(["model=dnn", f"{new}=1", "task.optimizer.lr=0.1"])  # the new keys pass


def test_the_training_entry_stops_on_a_moved_key_before_composing(monkeypatch):
    from recsys_lab.runners import train

    monkeypatch.setattr(sys, "argv", ["recsys-train", "task=exfm_student", "task.distill=serving"])
    with pytest.raises(SystemExit, match=r"task\.distill is now task\.objective\.distill"):
        train.main()


def test_every_moved_key_exists_at_its_new_home(tmp_path, hydra_ctx):
    """The hints point at keys the task configs really have."""
    homes: dict[str, set[str]] = {"objective": set(), "schedule": set()}
    for task, model in (
        ("exfm_student", "exfm_vm"),
        ("ocarm_student", "dnn"),
        ("grab", "grab"),
        ("lum_pretrain", "lum"),
    ):
        cfg = compose_train(tmp_path, f"task={task}", f"model={model}")
        for group in homes:
            homes[group].update(cfg.task.get(group) or {})
    for new in stage.MOVED_KEYS.values():
        _, group, key = new.split(".")
        assert key in homes[group], new
