"""``scripts/claims_lum.py``: the LUM pre-training stage it composes stops early on validation
InfoNCE (not the CTR metrics the default callbacks watch), at the requested size and step cap, and
its learning curve is read back from the CSV log without the re-validation of the best checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from recsys_lab.runners.stage import CONFIG_DIR
from scripts.claims_lum import parse_size, pretrain_curve, pretrain_overrides, world


def _args(**kw: object) -> argparse.Namespace:
    base = dict(
        preset="tiny",
        users=300,
        history=8,
        heads=2,
        pretrain_batch_size=64,
        pretrain_lr=3e-3,
        pretrain_max_steps=500,
        pretrain_val_every=50,
        pretrain_val_batches=2,
        pretrain_patience=3,
        pretrain_min_delta=0.02,
    )
    return argparse.Namespace(**{**base, **kw})


def test_pretrain_stage_stops_on_validation_infonce() -> None:
    args = _args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["experiment=lum_pretrain", *world(args, 7), *pretrain_overrides(args, "64x4")],
        )
    assert (cfg.model.dim, cfg.model.num_layers, cfg.model.max_history) == (64, 4, 8)
    assert cfg.data.max_history == 8 and cfg.data.world.seed == 7 and cfg.data.world.num_users == 300
    stop = cfg.callbacks.early_stopping
    assert (stop.monitor, stop.mode, stop.patience, stop.min_delta) == ("val/infonce", "min", 3, 0.02)
    assert cfg.callbacks.model_checkpoint.monitor == "val/infonce"  # the features read best.ckpt
    assert cfg.trainer.max_steps == 500 and cfg.trainer.val_check_interval == 50
    assert cfg.task.optimizer.lr == cfg.task.sparse_optimizer.lr == 3e-3  # dense and embedding rows
    assert cfg.trainer.check_val_every_n_epoch is None  # checks every 50 steps across epochs
    assert "CSVLogger" in cfg.logger.csv._target_


def test_size_must_be_dim_x_layers() -> None:
    assert parse_size("32x2") == (32, 2)
    with pytest.raises(SystemExit, match="<dim>x<layers>"):
        parse_size("32")


def test_curve_drops_the_final_revalidation(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,train/infonce_step,val/infonce\n"
        "0,9,6.1,\n0,99,,5.5\n1,199,,4.0\n1,299,,4.2\n"
        "1,300,,4.0\n"  # the best checkpoint re-validated after fitting, at the final step count
    )
    assert pretrain_curve(tmp_path, 100) == [(100, 5.5), (200, 4.0), (300, 4.2)]
    assert pretrain_curve(tmp_path / "missing", 100) == []


def test_claims_table_cell_counts_capped_pretrainings(tmp_path: Path) -> None:
    from scripts.results_claims import _conv_lum

    assert _conv_lum(tmp_path) is None  # the study has not run
    g = {
        "mean": 0.001,
        "low": -0.01,
        "high": 0.012,
        "n": 3,
        "verdict": "not reproduced (interval contains 0)",
    }
    summary = {
        "gain": {"16x1": g, "64x4": {**g, "low": 0.002, "verdict": "reproduced"}},
        "growth": g,
        "pretrain": {"runs": 6, "capped": 2, "lr": 0.003, "max_steps": 1600},
    }
    (tmp_path / "lum_plateau").mkdir()
    (tmp_path / "lum_plateau" / "summary.json").write_text(json.dumps(summary))
    result, verdict = _conv_lum(tmp_path)
    assert "pre-training early-stopped in 4/6 runs (lr 0.003, cap 1600 steps)" in result
    assert "64x4: +0.0010 [+0.0020, +0.0120]" in result
    assert verdict.startswith("gain > 0: reproduced at 64x4; grows with size: not reproduced")
