"""Chained runs: the warmstart pipeline, skip-on-rerun, config changes and resume after a crash."""

import json

import pytest
import yaml
from omegaconf import open_dict

from recsys_lab.runners.pipeline import PipelineError, run_pipeline
from recsys_lab.runners.stage import RunLockedError, run_lock
from tests.conftest import compose_train
from tests.helpers import CRASH_ENV

pytestmark = pytest.mark.usefixtures("hydra_ctx")

TINY = 'overrides=["debug=tiny","logger=none","trainer.max_epochs=2"]'
CRASH_CALLBACK = "+callbacks.crash._target_=tests.helpers.CrashAtEpochStart"


def compose_pipeline(tmp_path, *overrides, crash_in_stage: int | None = None):
    cfg = compose_train(
        tmp_path,
        "pipeline=warmstart",
        TINY,
        f"pipeline_dir={tmp_path}/pipe",
        *overrides,
        config_name="pipeline",
    )
    if crash_in_stage is not None:
        with open_dict(cfg):
            cfg.pipeline.stages[crash_in_stage].overrides.append(CRASH_CALLBACK)
    return cfg


def test_warmstart_runs_then_skips(tmp_path):
    results = run_pipeline(compose_pipeline(tmp_path))
    assert [(r.name, r.status) for r in results] == [("dnn", "ran"), ("dcnv2", "ran")]
    # Stage 2 was configured from stage 1's output by interpolation.
    stage2 = yaml.safe_load((tmp_path / "pipe" / "dcnv2" / "config.yaml").read_text())
    assert stage2["init"]["checkpoint"] == results[0].outputs["best_checkpoint"]
    assert stage2["model"]["_target_"].endswith("DCNv2")
    state = json.loads((tmp_path / "pipe" / "state.json").read_text())["stages"]
    assert state["dnn"]["status"] == state["dcnv2"]["status"] == "done"

    again = run_pipeline(compose_pipeline(tmp_path))
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert again[1].outputs["test/auc"] == results[1].outputs["test/auc"]


def test_changing_a_stage_reruns_it_only(tmp_path):
    run_pipeline(compose_pipeline(tmp_path))
    cfg = compose_pipeline(tmp_path)
    with open_dict(cfg):
        cfg.pipeline.stages[1].overrides.append("model.num_cross_layers=1")
    assert [r.status for r in run_pipeline(cfg)] == ["skipped", "ran"]
    assert list((tmp_path / "pipe").glob("dcnv2.old-*")), "the old stage directory is kept aside"
    # Changing the first stage re-runs both (the second depends on it).
    cfg = compose_pipeline(tmp_path)
    with open_dict(cfg):
        cfg.pipeline.stages[0].overrides.append("model.hidden_units=[32]")
    assert [r.status for r in run_pipeline(cfg)] == ["ran", "ran"]


def test_interrupted_stage_resumes_and_matches_uninterrupted(tmp_path, monkeypatch):
    reference = run_pipeline(compose_pipeline(tmp_path / "ref", crash_in_stage=1))
    monkeypatch.setenv(CRASH_ENV, "1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(compose_pipeline(tmp_path / "crash", crash_in_stage=1))
    state = json.loads((tmp_path / "crash" / "pipe" / "state.json").read_text())["stages"]
    assert state["dnn"]["status"] == "done" and state["dcnv2"]["status"] == "running"
    monkeypatch.delenv(CRASH_ENV)
    resumed = run_pipeline(compose_pipeline(tmp_path / "crash", crash_in_stage=1))
    assert [r.status for r in resumed] == ["skipped", "resumed"]
    for key in ("val/auc", "test/auc", "test/logloss"):
        assert resumed[1].outputs[key] == pytest.approx(reference[1].outputs[key], abs=1e-6), key


def test_reference_to_a_later_stage_is_an_error(tmp_path):
    cfg = compose_pipeline(tmp_path)
    with open_dict(cfg):
        cfg.pipeline.stages[0].overrides.append("init.checkpoint=${stage:dcnv2,best_checkpoint}")
    with pytest.raises(PipelineError, match="has not run before"):
        run_pipeline(cfg)


def test_bad_stage_definitions_are_rejected(tmp_path):
    cfg = compose_pipeline(tmp_path)
    with open_dict(cfg):
        cfg.pipeline.stages[1].name = "dnn"
    with pytest.raises(PipelineError, match="unique"):
        run_pipeline(cfg)
    cfg = compose_pipeline(tmp_path)
    with open_dict(cfg):
        cfg.pipeline.stages[0].overides = ["model=dnn"]
    with pytest.raises(PipelineError, match="overides"):
        run_pipeline(cfg)


def test_a_second_run_of_the_same_pipeline_folder_is_refused(tmp_path):
    cfg = compose_pipeline(tmp_path)
    with run_lock(tmp_path / "pipe", "pipeline"):  # another process running this pipeline
        with pytest.raises(RunLockedError, match=r"The pipeline folder .*/pipe is in use by pid \d+"):
            run_pipeline(cfg)
    assert not (tmp_path / "pipe" / "state.json").exists()  # nothing was written meanwhile
