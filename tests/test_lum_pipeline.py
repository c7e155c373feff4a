"""pipeline=lum end to end on the tiny world: pre-train, write features keyed by split and row,
train DCNv2 with them; a re-run skips every stage; the join refuses features of other data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from omegaconf import open_dict

from recsys_lab.data.feature_join import FeatureJoinDataModule
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule
from recsys_lab.runners.lum_features import feature_file, load_lum
from recsys_lab.runners.pipeline import run_pipeline
from tests.conftest import compose_train

pytestmark = pytest.mark.usefixtures("hydra_ctx")

FAST = 'overrides=["debug=tiny","logger=none","trainer.limit_train_batches=3","trainer.limit_val_batches=1","num_threads=1"]'
SMALL_LUM = ["model.dim=16", "model.num_layers=1", "model.max_history=8", "data.max_history=8"]


def compose(tmp_path):
    cfg = compose_train(
        tmp_path, "pipeline=lum", FAST, f"pipeline_dir={tmp_path}/pipe", config_name="pipeline"
    )
    with open_dict(cfg):
        cfg.pipeline.stages[0].overrides.extend(SMALL_LUM)
    return cfg


def test_lum_pipeline_runs_end_to_end_then_skips(tmp_path):
    results = run_pipeline(compose(tmp_path))
    assert [(r.name, r.status) for r in results] == [("pretrain", "ran"), ("features", "ran"), ("ctr", "ran")]
    pretrain, features, ctr = (r.outputs for r in results)
    assert pretrain["model"] == "LUM" and ctr["model"] == "DCNv2"
    assert ctr["data"] == "synthetic_seq+features"

    # Stage 2 wrote one row per sample of every split, keyed by the dataset order.
    meta = json.loads((tmp_path / "pipe" / "features" / "lum_features.json").read_text())
    dm = SyntheticSeqDataModule(preset="tiny", max_history=64)
    dm.setup()
    model, _ = load_lum(pretrain["dir"], dm.schema)
    q, d = model.num_queries, model.dim
    assert len(meta["names"]) == features["num_features"] == q * d + d + q
    for split in ("train", "val", "test"):
        stored = np.load(feature_file(features["features_dir"], split))
        dataset = getattr(dm, f"{split}_dataloader")().dataset
        assert stored.shape == (len(dataset), len(meta["names"])) == (meta["rows"][split], stored.shape[1])
        rows = torch.tensor([0, len(dataset) // 2, len(dataset) - 1])
        with torch.no_grad():
            again = model.features(dataset[rows]).numpy()
        np.testing.assert_allclose(stored[rows.numpy()], again, rtol=1e-4, atol=1e-5)
        assert np.isfinite(stored).all()

    # Stage 3 read them as extra numeric features.
    stage3 = yaml.safe_load((tmp_path / "pipe" / "ctr" / "config.yaml").read_text())
    assert stage3["data"]["features_dir"] == features["features_dir"]
    join = FeatureJoinDataModule(
        SyntheticSeqDataModule(preset="tiny", max_history=64), features["features_dir"]
    )
    join.setup()
    assert join.schema.num_numeric == dm.schema.num_numeric + len(meta["names"])
    batch = next(iter(join.val_dataloader()))
    val = np.load(feature_file(features["features_dir"], "val"))
    np.testing.assert_array_equal(batch.dense[:, dm.schema.num_numeric :].numpy(), val[: len(batch)])

    again = run_pipeline(compose(tmp_path))
    assert [r.status for r in again] == ["skipped", "skipped", "skipped"]

    # Features written for one world do not join onto another.
    other = FeatureJoinDataModule(
        SyntheticSeqDataModule(preset="tiny", warmup_days=3), features["features_dir"]
    )
    with pytest.raises(ValueError, match="other data"):
        other.train_dataloader()


def test_feature_stage_needs_a_pretrain_dir(tmp_path):
    from recsys_lab.runners.lum_features import write_lum_features

    cfg = compose_train(tmp_path, "data=synthetic_seq", "debug=tiny")
    with pytest.raises(ValueError, match="pretrain_dir"):
        write_lum_features(cfg)
    with open_dict(cfg):
        cfg.lum_features = {"pretrain_dir": str(tmp_path / "nowhere")}
    with pytest.raises(FileNotFoundError, match="not a finished LUM"):
        write_lum_features(cfg)
