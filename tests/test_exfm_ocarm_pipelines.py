"""The ExFM and OCARM pipelines end to end on the tiny world: stages chain, a crashed streaming
stage resumes to the same metrics, a re-run skips everything, and the OCARM student never gets
privileged data."""

import json

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from recsys_lab.models.ocarm_student import OCARMStudent
from recsys_lab.runners import das, streaming
from recsys_lab.runners.pipeline import run_pipeline
from tests.conftest import compose_train

pytestmark = pytest.mark.usefixtures("hydra_ctx")

TINY = 'overrides=["debug=tiny","logger=none","num_threads=1"]'


def compose_pipeline(tmp_path, name, *overrides):
    return compose_train(
        tmp_path,
        f"pipeline={name}",
        TINY,
        f"pipeline_dir={tmp_path}/pipe",
        *overrides,
        config_name="pipeline",
    )


def test_exfm_pipeline_end_to_end_and_resume(tmp_path, monkeypatch):
    overrides = ("pipeline.verticals=[1,2]",)

    def crash(vertical, index):
        if (vertical, index) == ("vm2", 0):
            raise RuntimeError("simulated crash")

    original = streaming.stream_vertical

    def crash_in_last_stage(cfg, vm_dir, *args):
        monkeypatch.setattr(
            streaming, "_after_day", crash if "vm_aux_adapter" in str(vm_dir) else lambda *a: None
        )
        return original(cfg, vm_dir, *args)

    monkeypatch.setattr(streaming, "stream_vertical", crash_in_last_stage)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(compose_pipeline(tmp_path, "exfm", *overrides))
    pipe = tmp_path / "pipe"
    state = json.loads((pipe / "state.json").read_text())["stages"]
    assert [state[s]["status"] for s in ("fm", "das", "vm_none", "vm_serving", "vm_aux")] == ["done"] * 5
    assert state["vm_aux_adapter"]["status"] == "running"

    monkeypatch.setattr(streaming, "stream_vertical", original)
    monkeypatch.setattr(streaming, "_after_day", lambda *a: None)
    results = run_pipeline(compose_pipeline(tmp_path, "exfm", *overrides))
    assert [r.status for r in results] == ["skipped"] * 5 + ["resumed"]

    # The FM trained on the days before t - delta: tiny has days 2..7, the VMs stream 5..7, delta 1.
    fm_cfg = yaml.safe_load((pipe / "fm" / "config.yaml").read_text())
    assert (fm_cfg["data"]["val_days"], fm_cfg["data"]["test_days"]) == (1, 4)
    # The DAS column covers every example of the streaming days, once; a re-run skips the work.
    logged = np.load(results[1].outputs["teacher_path"])
    assert np.all(np.diff(logged["log_row"]) > 0) and np.all((logged["col_fm"] > 0) & (logged["col_fm"] < 1))
    das_cfg = OmegaConf.load(pipe / "das" / "config.yaml")
    das_cfg.data.val_days = 3  # splits do not change the logged predictions
    assert das.run(das_cfg).get("skipped") is True

    for stage in ("vm_none", "vm_serving", "vm_aux", "vm_aux_adapter"):
        rows = (pipe / stage / "metrics_by_day.csv").read_text().splitlines()
        assert len(rows) == 1 + 2 * 2, stage  # 2 verticals x 2 prequential days
        assert (pipe / stage / "metrics_by_day.png").is_file()
    # The resumed stage equals an uninterrupted run of the same config.
    cfg = OmegaConf.load(pipe / "vm_aux_adapter" / "config.yaml")
    cfg.paths.output_dir = str(tmp_path / "reference")
    cfg.ckpt_path = None
    reference = streaming.run(cfg)
    assert (tmp_path / "reference" / "metrics_by_day.csv").read_text() == (
        pipe / "vm_aux_adapter" / "metrics_by_day.csv"
    ).read_text()
    assert results[-1].outputs["stream/auc"] == reference["stream/auc"]


def test_ocarm_pipeline_and_the_privileged_data_guard(tmp_path, monkeypatch):
    seen = []
    original = OCARMStudent.forward_rep

    def spy(self, batch):
        seen.append(batch.privileged)
        return original(self, batch)

    monkeypatch.setattr(OCARMStudent, "forward_rep", spy)
    results = run_pipeline(compose_pipeline(tmp_path, "ocarm"))
    assert [r.name for r in results] == ["teacher", "teacher_log", "student", "student_distill"]
    # The student saw batches — and never one with privileged data (its datamodule has none).
    assert len(seen) >= 4 and all(p is None for p in seen)
    for stage in ("student", "student_distill"):
        cfg = yaml.safe_load((tmp_path / "pipe" / stage / "config.yaml").read_text())
        assert cfg["data"]["privileged"] is False
    teacher = yaml.safe_load((tmp_path / "pipe" / "teacher" / "config.yaml").read_text())
    # The teacher validates with its content (checkpoint selection on the teacher, not the naive model).
    assert teacher["data"]["privileged_val"] is True and teacher["callbacks"]["model_checkpoint"]["monitor"]
    logged = np.load(results[1].outputs["teacher_path"])
    assert logged["col_rep"].shape == (logged["log_row"].size, 32)  # the teacher's last hidden width
    out = results[1].outputs
    for key in ("teacher/test_auc", "naive/test_auc", "test/oracle_auc", "test/observable_auc_retention"):
        assert key in out
    distilled = yaml.safe_load((tmp_path / "pipe" / "student_distill" / "config.yaml").read_text())
    assert (
        distilled["data"]["teacher_path"] == out["teacher_path"]
        and distilled["task"]["objective"]["rep_weight"] > 0
    )
    # A student stage configured with privileged data fails loudly instead of training on it.
    cfg = compose_pipeline(tmp_path / "leak", "ocarm")
    cfg.pipeline.stages[2].overrides.append("data.privileged=true")
    with pytest.raises(RuntimeError, match="privileged"):
        run_pipeline(cfg)
