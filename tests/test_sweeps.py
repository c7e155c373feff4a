"""Sweeps through the Hydra entry: Optuna (TPE, sqlite storage that a re-run continues), joblib
and submitit_local launchers. Each runs `recsys_lab.runners.train.main` in-process with a patched argv
(the launchers start their own worker processes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys_lab.runners.train import main


def _hydra_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["recsys_lab.train", *args])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()


def _metrics(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("**/metrics.json"))]


@pytest.mark.subprocess
def test_optuna_sweep_stores_trials_and_a_rerun_continues(tmp_path, monkeypatch):
    common = ("sweep=optuna", "debug=fast_dev_run", "task_name=opt", f"paths.log_dir={tmp_path}")
    _hydra_main(monkeypatch, *common, "hydra.sweeper.n_trials=2")
    sweep_dir = tmp_path / "opt" / "optuna"
    storage = f"sqlite:///{sweep_dir}/optuna.db"
    study = optuna.load_study(study_name="opt", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    first_lrs = {t.params["task.optimizer.lr"] for t in study.trials}
    assert len(first_lrs) == 2 and all(1e-4 <= lr <= 1e-2 for lr in first_lrs)

    # An "interrupted" sweep run again: the same storage is loaded and one more trial is added.
    _hydra_main(monkeypatch, *common, "hydra.sweeper.n_trials=1")
    study = optuna.load_study(study_name="opt", storage=storage)
    assert len(study.trials) == 3
    assert {t.params["task.optimizer.lr"] for t in study.trials[:2]} == first_lrs
    runs = _metrics(sweep_dir)
    assert len(runs) == 3  # job folders of the first invocation are kept, not overwritten
    assert study.best_value == pytest.approx(max(m["val/auc"] for m in runs))


@pytest.mark.subprocess
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, monkeypatch):
    _hydra_main(
        monkeypatch,
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=dnn,deepfm",
        "debug=fast_dev_run",
        "num_threads=1",
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert sorted(m["model"] for m in _metrics(tmp_path / "sweep")) == ["DNN", "DeepFM"]


@pytest.mark.subprocess
def test_submitit_local_launcher_runs_one_job(tmp_path, monkeypatch):
    _hydra_main(
        monkeypatch,
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "model=dnn",
        "debug=fast_dev_run",
        "num_threads=1",
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    runs = _metrics(tmp_path / "sweep")
    assert [m["model"] for m in runs] == ["DNN"]
    assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))  # ran as a submitit job
