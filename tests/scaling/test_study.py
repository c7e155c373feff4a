"""Scaling studies: a real 2-point study in-process, resume, and the report on planted points."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys_lab.runners.stage import CONFIG_DIR
from recsys_lab.runners.study import is_finished, point_command, points, run_study

pytestmark = pytest.mark.usefixtures("hydra_ctx")
STUDIES = sorted(p.stem for p in (Path(CONFIG_DIR) / "study").glob("*.yaml"))


def _scaling_cfg(tmp_path: Path, study: str = "dcnv2_width", *overrides: str) -> DictConfig:
    cfg = compose(
        config_name="scaling", overrides=[f"study={study}", f"out_dir={tmp_path / 'study'}", *overrides]
    )
    return cfg


def test_two_point_study_runs_then_resumes_without_training(tmp_path):
    cfg = _scaling_cfg(tmp_path, "dcnv2_width", "overrides=['debug=fast_dev_run']")
    with open_dict(cfg):
        cfg.study.families.dcnv2.grid = {"model.hidden_units": [[8], [32]]}
    first = run_study(cfg)
    assert len(first["trained"]) == 2
    rows = first["rows"]
    assert [r["config:model.hidden_units"] for r in rows] == ["[8]", "[32]"]
    assert rows[0]["params/dense"] < rows[1]["params/dense"]
    assert rows[0]["flops/per_example"] < rows[1]["flops/per_example"]
    assert all(0 < r["test/logloss"] < 1 for r in rows)
    out = tmp_path / "study"
    assert "too few" in (out / "table.md").read_text() or "needs 3" in (out / "table.md").read_text()
    with (out / "table.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (out / "test_logloss_vs_params_dense.png").stat().st_size > 1000

    second = run_study(cfg)
    assert second["trained"] == []
    assert [r["test/logloss"] for r in second["rows"]] == [r["test/logloss"] for r in rows]


def _fake_train(a: float, b: float, c: float):
    """A stand-in for train.run: writes the metrics.json of a planted power law in dense params."""

    def train(cfg: DictConfig) -> dict:
        width = cfg.model.hidden_units[0]
        dense = 100 * width
        metrics = {
            "params/embedding": 1000,
            "params/dense": dense,
            "flops/per_example": 2 * dense,
            "global_step": 10,
            "test/logloss": a * dense ** (-b) + c,
            "test/oracle_logloss": c,
            "test/auc": 0.7,
        }
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (out / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return train


def test_report_fits_planted_power_law_and_resume_skips_finished(tmp_path):
    cfg = _scaling_cfg(tmp_path)
    train = _fake_train(a=4.0, b=0.4, c=0.3)
    with open_dict(cfg):
        cfg.study.families.dcnv2.grid = {"model.hidden_units": [[8], [16], [32], [64]]}
    first = run_study(cfg, train=train)
    assert len(first["trained"]) == 4
    fit = first["fits"]["params/dense"]["dcnv2"]
    assert fit.b == pytest.approx(0.4, rel=1e-3)
    assert fit.c == pytest.approx(0.3, abs=1e-6)
    row = first["rows"][0]
    assert row["flops/train"] == 3 * row["flops/per_example"] * 10 * 1024  # steps x data.batch_size
    # Growing the grid trains only the new points.
    with open_dict(cfg):
        cfg.study.families.dcnv2.grid = {"model.hidden_units": [[8], [16], [32], [64], [128]]}
    second = run_study(cfg, train=train)
    assert [p.point_id for p in second["trained"]] == ["dcnv2__hidden_units-128__seed-42"]
    assert len(second["rows"]) == 5
    fits = (tmp_path / "study" / "fits.csv").read_text()
    assert "params/dense,test/logloss,dcnv2,5" in fits
    assert (tmp_path / "study" / "test_logloss_vs_flops_per_example.png").is_file()


def test_commands_mode_lists_unfinished_points(tmp_path, capsys):
    cfg = _scaling_cfg(tmp_path, "dcnv2_width", "mode=commands")
    result = run_study(cfg)
    lines = capsys.readouterr().out.strip().splitlines()
    assert result["commands"] == len(points(cfg.study)) == len(lines)
    assert lines[0].startswith("python -m recsys_lab.train 'data=synthetic'")
    assert "hydra.run.dir=" in lines[0]


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_config_composes_its_points(tmp_path, study):
    """The first and last point of every family compose into a train config (its knobs exist)."""
    cfg = _scaling_cfg(tmp_path, study)
    pts = points(cfg.study)
    assert len(pts) >= 2
    assert cfg.study.y and len(cfg.study.x) >= 1
    families: dict[str, list] = {}
    for point in pts:
        families.setdefault(point.family, []).append(point)
    for point in (p for fam in families.values() for p in dict.fromkeys([fam[0], fam[-1]])):
        assert not is_finished(Path(cfg.out_dir), point)
        train_cfg = compose(config_name="train", overrides=[*point.overrides, "debug=fast_dev_run"])
        assert train_cfg.model._target_
        assert point_command(point, Path(cfg.out_dir)).startswith("python -m recsys_lab.train")
