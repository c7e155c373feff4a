"""End-to-end runs of `recsys_lab.train`: learning to the oracle, resume, CLI, multirun, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from recsys_lab.runners.train import run
from tests.conftest import compose_train

pytestmark = pytest.mark.usefixtures("hydra_ctx")

CONTRACT_KEYS = {
    "val/auc",
    "test/auc",
    "test/logloss",
    "test/gauc",
    "test/ne",
    "test/calibration",
    "test/oracle_auc",
    "test/oracle_logloss",
    "params/embedding",
    "params/dense",
    "flops/per_example",
    "train/samples_per_s",
    "model",
    "data",
    "seed",
}
REPO = Path(__file__).resolve().parent.parent


def test_dcnv2_reaches_the_oracle(tmp_path):
    """The default model on the default synthetic data gets within 0.02 AUC of the true probabilities."""
    cfg = compose_train(tmp_path, "callbacks.rich_progress_bar=null", "logger=none")
    m = run(cfg)
    assert CONTRACT_KEYS <= set(m)
    gap = m["test/oracle_auc"] - m["test/auc"]
    assert 0 <= gap < 0.02, f"test AUC {m['test/auc']:.4f} vs oracle {m['test/oracle_auc']:.4f}"
    assert m["test/logloss"] < m["test/oracle_logloss"] + 0.01
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/auc"] == pytest.approx(m["test/auc"])


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    common = ("debug=tiny", "model=deepfm", "trainer.max_epochs=2", "logger=none")
    full = run(compose_train(tmp_path / "full", *common))
    first = run(compose_train(tmp_path / "part", *common[:-2], "trainer.max_epochs=1", "logger=none"))
    assert first["epochs"] == 1
    last = tmp_path / "part" / "run" / "checkpoints" / "last.ckpt"
    resumed = run(compose_train(tmp_path / "part", *common, f"ckpt_path={last}"))
    for key in ("val/auc", "test/auc", "test/logloss", "test/gauc"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key
    assert resumed["global_step"] == full["global_step"]


def test_unknown_model_fails_at_start_naming_the_options(tmp_path):
    with pytest.raises(MissingConfigException, match="dcnv2"):
        compose_train(tmp_path, "model=dcnv3")


def test_misspelt_model_argument_fails_at_start(tmp_path):
    with pytest.raises(ConfigCompositionException, match="hiden_units"):
        compose_train(tmp_path, "model=dnn", "model.hiden_units=[8]")
    cfg = compose_train(tmp_path, "debug=fast_dev_run", "model=dnn", "+model.hiden_units=[8]")
    with pytest.raises(TypeError, match="hiden_units"):
        run(cfg)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_cli_multirun_two_jobs(tmp_path):
    out = _cli(
        [
            sys.executable,
            "-m",
            "recsys_lab.train",
            "-m",
            "model=dnn,deepfm",
            "debug=fast_dev_run",
            f"paths.log_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert [m["model"] for m in metrics] == ["DNN", "DeepFM"]


@pytest.mark.subprocess
def test_console_script_runs_an_experiment(tmp_path):
    script = Path(sys.executable).parent / "recsys-train"
    out = _cli(
        [
            str(script),
            "experiment=dcnv2_moe",
            "debug=tiny",
            "logger=many",
            f"paths.log_dir={tmp_path}",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(m)
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))
    assert "oracle" in out.stdout  # the metrics table
