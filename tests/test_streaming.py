"""The prequential streaming runner: train on day d, evaluate on d + 1; per-day table and plot;
resume after a crash equals an uninterrupted run."""

import csv
import json

import numpy as np
import pytest
import torch

from recsys_lab.data.synthetic.stream_datamodule import SyntheticStreamDataModule
from recsys_lab.metrics import auc
from recsys_lab.runners import streaming
from tests.conftest import compose_train

pytestmark = pytest.mark.usefixtures("hydra_ctx")


def compose_stream(tmp_path, *extra):
    return compose_train(
        tmp_path,
        "data=synthetic_stream",
        "debug=tiny",
        "logger=none",
        "model=exfm_vm",
        "task=exfm_student",
        "+streaming.last_days=3",
        "num_threads=1",
        *extra,
    )


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A logged-predictions file: the true click probability, halved (a stale, miscalibrated FM)."""
    dm = SyntheticStreamDataModule(preset="tiny", max_history=0)
    dm.setup()
    c = dm.samples.columns
    order = np.argsort(c.log_row)
    path = tmp_path_factory.mktemp("das") / "fm.npz"
    np.savez(path, log_row=c.log_row[order], col_fm=(c.extras["true_prob"][order] / 2).astype(np.float32))
    return str(path)


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_trains_on_each_day_then_evaluates_the_next(tmp_path, monkeypatch):
    calls = []
    original = SyntheticStreamDataModule.day_dataloader

    def spy(self, day, train=False):
        calls.append((day, train))
        return original(self, day, train)

    monkeypatch.setattr(SyntheticStreamDataModule, "day_dataloader", spy)
    cfg = compose_stream(
        tmp_path,
        "model.aux_head=false",
        "task.objective.distill=none",
        "+streaming.verticals=[1]",
        "+streaming.save_predictions=true",
    )
    metrics = streaming.run(cfg)
    assert calls == [(5, True), (6, False), (6, True), (7, False)]  # tiny: days 2..7, the last 3 streamed
    out = tmp_path / "run"
    rows = read_rows(out / "metrics_by_day.csv")
    assert [(r["vertical"], r["train_day"], r["day"]) for r in rows] == [("vm1", "5", "6"), ("vm1", "6", "7")]
    assert (out / "metrics_by_day.png").stat().st_size > 1000
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/auc"] == pytest.approx(float(rows[-1]["auc"]))
    assert saved["stream/ne"] == pytest.approx(np.mean([float(r["ne"]) for r in rows]))
    assert 0.5 < saved["stream/auc"] < saved["stream/oracle_auc"]
    assert metrics["flops/per_example"] > 0 and metrics["verticals"] == 1
    for r in rows:  # the saved serving predictions are the ones the day's metrics were computed from
        saved_day = torch.load(out / "vm1" / "predictions" / f"day{r['day']}.pt")
        assert saved_day["probs"].shape == saved_day["labels"].shape == (int(r["rows"]),)
        assert auc(saved_day["probs"], saved_day["labels"]) == pytest.approx(float(r["auc"]), abs=1e-6)


def test_teacher_column_reaches_the_batches(teacher_file):
    dm = SyntheticStreamDataModule(preset="tiny", max_history=0, domains=[2], teacher_path=teacher_file)
    batch = next(iter(dm.day_dataloader(5)))
    np.testing.assert_allclose(batch.teacher["fm"].numpy(), batch.extras["true_prob"].numpy() / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="teacher_path"):
        SyntheticStreamDataModule(preset="tiny", teacher_path=str(teacher_file) + ".missing").setup()


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch, teacher_file):
    extra = (
        "task.objective.distill=aux_adapter",
        f"data.teacher_path={teacher_file}",
        "+streaming.verticals=[1,2]",
    )
    reference = streaming.run(compose_stream(tmp_path / "ref", *extra))

    def crash(vertical, index):
        if (vertical, index) == ("vm2", 0):
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(streaming, "_after_day", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        streaming.run(compose_stream(tmp_path / "crash", *extra))
    out = tmp_path / "crash" / "run"
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "vm1" / "metrics_by_day.csv").is_file()
    monkeypatch.setattr(streaming, "_after_day", lambda vertical, index: None)
    resumed = streaming.run(
        compose_stream(tmp_path / "crash", *extra, f"+ckpt_path={out}/checkpoints/last.ckpt")
    )
    ref_rows = read_rows(tmp_path / "ref" / "run" / "metrics_by_day.csv")
    assert read_rows(out / "metrics_by_day.csv") == ref_rows and len(ref_rows) == 4
    for key in ("stream/auc", "stream/ne", "test/auc"):
        assert resumed[key] == reference[key], key


def test_a_misspelt_setting_fails_before_anything_runs(tmp_path):
    cfg = compose_stream(tmp_path, "+streaming.vertical=[1]")
    with pytest.raises(ValueError, match=r"streaming\.vertical is not a setting.*verticals, last_days"):
        streaming.run(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()
    with pytest.raises(ValueError, match="last_days"):
        streaming.settings(compose_stream(tmp_path, "streaming.last_days=three"))
