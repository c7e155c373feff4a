"""Pieces of the GRAB CamA and APG convergence studies (issue 13) that need no training: the
action-blind oracle, the twins' overrides (each pair differs by the one knob under test), the APG
study's oracles and serving parameters on a composed run configuration."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recsys_lab.data.synthetic.world import CLICK, DAY, World, WorldSpec
from recsys_lab.metrics import auc
from recsys_lab.runners.stage import CONFIG_DIR
from scripts import claims_apg, claims_grab, claims_grab_cama
from scripts.oracle_curves import truncated_oracle


def last_day(weights: tuple[float, float, float]) -> tuple[World, object, np.ndarray, torch.Tensor]:
    spec = WorldSpec.from_preset("tiny", {"seed": 1, "action_weights": weights})
    world = World(spec)
    log = world.generate_all()
    rows = np.flatnonzero(log.ts // DAY == spec.num_days - 1)
    return world, log, rows, torch.from_numpy(((log.action[rows] & CLICK) > 0).astype(np.float64))


def test_action_blind_oracle_is_the_oracle_when_actions_weigh_alike_and_worse_when_they_do_not():
    world, log, rows, _ = last_day((1.0, 1.0, 1.0))
    assert np.allclose(
        truncated_oracle(world, log, rows, 16, action_blind=True), truncated_oracle(world, log, rows, 16)
    )
    world, log, rows, y = last_day((0.1, 1.0, 3.0))
    full = truncated_oracle(world, log, rows, None)
    blind = truncated_oracle(world, log, rows, None, action_blind=True)
    assert not np.allclose(full, blind)
    assert auc(torch.from_numpy(blind), y) < auc(torch.from_numpy(full), y)
    assert np.array_equal(
        truncated_oracle(world, log, rows, 0, action_blind=True), truncated_oracle(world, log, rows, 0)
    )


def grab_args(tmp_path) -> argparse.Namespace:
    return argparse.Namespace(
        users=400, events_per_batch=2048, val_rows=256, max_epochs=5, extra=[], k=128,
        cama_out=tmp_path / "grab", out=tmp_path / "grab_cama",
    )  # fmt: skip


def test_cama_runs_are_the_history_studys_and_single_differs_by_the_channels_only(tmp_path):
    args = grab_args(tmp_path)
    cama, single = (claims_grab_cama.overrides(args, v, 3) for v in ("cama", "single"))
    assert cama == claims_grab.overrides(args, 3, 128)
    assert single == [*cama, "model.channels=single"]
    assert claims_grab_cama.run_dir(args, "cama", 3) == tmp_path / "grab" / "k128" / "seed3"
    assert claims_grab_cama.run_dir(args, "single", 3).is_relative_to(tmp_path / "grab_cama")
    assert args.extra == []  # variant_args copies, never appends in place
    assert claims_grab_cama.verdict(0.01, 0.02, 5) == "reproduced"
    assert claims_grab_cama.verdict(-0.02, -0.01, 5) == "contradicted"
    assert claims_grab_cama.verdict(-0.01, 0.02, 5).startswith("not reproduced")


@pytest.fixture(scope="module")
def apg_runs(tmp_path_factory) -> dict:
    """config.yaml of both twins on a small instance-specific world, as a run folder holds it."""
    root = tmp_path_factory.mktemp("apg")
    args = argparse.Namespace(
        num_train=2000, num_eval=4000, batch_size=256, max_epochs=2, field="user", hidden=[16, 8], out=root
    )
    runs = {}
    for v in claims_apg.VARIANTS:
        d = claims_apg.run_dir(args, 1.0, v, 0)
        d.mkdir(parents=True)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                "train", overrides=[*claims_apg.overrides(args, 1.0, v, 0), f"paths.output_dir={d}"]
            )
        OmegaConf.save(cfg, d / "config.yaml", resolve=True)
        runs[v] = (d, cfg)
    return runs


def test_apg_twins_differ_by_the_apg_layers_only(apg_runs):
    static, apg = apg_runs["static"][1], apg_runs["apg"][1]
    assert static.model.apg is None and apg.model.apg.condition == "group"
    assert list(apg.model.apg.group_fields) == ["user"]
    for cfg in (static, apg):
        assert cfg.data.instance_scale == 1.0 and cfg.data.instance_field == "user"
        assert list(cfg.model.hidden_units) == [16, 8]
    a, s = OmegaConf.to_container(apg), OmegaConf.to_container(static)
    for cfg in (a, s):
        del cfg["model"]["apg"]
        cfg["paths"] = cfg["trainer"]["default_root_dir"] = None
        cfg["callbacks"]["model_checkpoint"]["dirpath"] = cfg["callbacks"]["step_checkpoint"]["dirpath"] = (
            None
        )
        cfg["logger"]["csv"]["save_dir"] = None
    assert a == s


def test_apg_oracles_and_serving_parameters(apg_runs):
    d, _ = apg_runs["static"]
    o = claims_apg.oracles(d)
    assert 0.5 < o["no_instance"] < o["oracle"]  # the per-user term is worth AUC on this world
    assert claims_apg.oracles(d) == o and (d / "oracles.json").is_file()
    static, apg = (claims_apg.serving_params(apg_runs[v][0]) for v in claims_apg.VARIANTS)
    assert static > 0 and apg > 0 and apg != static


def test_apg_beside_lines_report_other_invocations(tmp_path):
    out = tmp_path / "apg_500k"
    out.mkdir()
    (out / "command.txt").write_text("python scripts/claims_apg.py --num-train 500000\n")
    summary = {"1": {"mean": 0.01, "low": 0.005, "high": 0.015, "n": 3, "verdict": "reproduced"}, "main": "1"}
    (out / "summary.json").write_text(json.dumps(summary))
    lines = claims_apg.beside_lines([out, tmp_path / "not_run"])
    assert len([x for x in lines if x]) == 1
    assert "--num-train 500000" in lines[0] and "S = 1: +0.0100 [+0.0050, +0.0150]" in lines[0]
    assert "reproduced" in lines[0]
