"""The multirun summary: one row per job (varying overrides, headline metrics), written as
Markdown and CSV into the sweep dir and printed by the parent at the end of a sweep."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys_lab.runners.summary import write_summary
from recsys_lab.runners.train import main


def _job(root, name, overrides, metrics=None):
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (root / name / "metrics.json").write_text(json.dumps(metrics))


def test_summary_lists_each_job_with_its_varying_overrides(tmp_path):
    _job(tmp_path, "0", ["model=dnn", "seed=1"], {"val/auc": 0.7, "test/auc": 0.71, "test/logloss": 0.5})
    _job(
        tmp_path,
        "1",
        ["model=deepfm", "seed=1"],
        {"val/auc": 0.72, "test/auc": 0.73, "test/logloss": float("nan")},
    )
    _job(tmp_path, "10", ["model=dcnv2", "seed=1"])  # failed: no metrics.json
    _job(tmp_path, "2", ["model=dcnv2", "seed=1"], {"val/auc": 0.74, "test/auc": 0.75, "test/logloss": 0.4})
    text = write_summary(tmp_path)
    assert "Every job: `seed=1`" in text
    header = next(line for line in text.splitlines() if line.startswith("| job"))
    assert header == "| job | model | val/auc | test/auc | test/logloss | status |"
    with open(tmp_path / "multirun_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]
    assert [r["model"] for r in rows] == ["dnn", "deepfm", "dcnv2", "dcnv2"]
    assert rows[1]["test/auc"] == "0.73" and rows[1]["test/logloss"] == "nan"
    assert rows[3]["status"].startswith("no metrics.json") and rows[3]["test/auc"] == ""
    assert (tmp_path / "multirun_summary.md").read_text() == text


def test_a_sweep_ends_with_its_summary(tmp_path, monkeypatch, capsys):
    args = [
        "-m",
        "model=dnn,deepfm",
        "debug=fast_dev_run",
        "logger=none",
        "num_threads=1",
        f"paths.log_dir={tmp_path}",
    ]
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["recsys_lab.train", *args])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    (summary,) = list(tmp_path.glob("**/multirun_summary.csv"))
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    jobs = [json.loads((summary.parent / r["job"] / "metrics.json").read_text()) for r in rows]
    assert [r["model"] for r in rows] == ["dnn", "deepfm"]
    assert [float(r["val/auc"]) for r in rows] == pytest.approx([j["val/auc"] for j in jobs])
    assert "| job | model |" in capsys.readouterr().out
