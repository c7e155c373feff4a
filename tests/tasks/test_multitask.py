"""CTRTask with a multi-task model: every label trained, per-label metrics, primary-label checks."""

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.dnn import DNN
from recsys_lab.models.esmm import ESMM
from recsys_lab.models.mmoe import MMoE
from recsys_lab.tasks.ctr import CTRTask
from tests.models.conftest import make_schema, make_two_label_planted

EMB = functools.partial(FullEmbedding, dim=8, sparse_grad=False)


def task(model, **kw):
    return CTRTask(model, optimizer=functools.partial(torch.optim.Adam, lr=1e-2), **kw)


def test_the_primary_label_must_be_predicted_and_weights_need_a_multitask_model():
    with pytest.raises(ValueError, match=r"task\.label='rating'"):
        task(MMoE(make_schema(), EMB), label="rating")
    with pytest.raises(ValueError, match="multi-task model"):
        task(DNN(make_schema(), EMB), label_weights={"click": 1.0})


def test_trains_both_labels_and_logs_per_label_metrics(tmp_path):
    train = [make_two_label_planted(256, seed=s) for s in range(8)]
    test = [make_two_label_planted(512, seed=100)]
    model = ESMM(make_schema(), EMB, hidden_units=[32])
    t = task(model, label_weights={"conversion": 2.0})
    trainer = L.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    loader = functools.partial(DataLoader, batch_size=None, collate_fn=lambda b: b)
    trainer.fit(t, train_dataloaders=loader(train), val_dataloaders=loader(test))
    assert {"train/click/loss", "train/conversion/loss", "val/conversion/auc"} <= set(
        trainer.callback_metrics
    )
    m = trainer.test(t, dataloaders=loader(test), verbose=False)[0]
    assert m["test/auc"] == m["test/click/auc"] > 0.9
    assert m["test/conversion/auc"] > 0.85
    assert {f"test/conversion/{k}" for k in ("logloss", "gauc", "ne", "calibration")} <= set(m)


def test_the_synthetic_world_reports_every_labels_oracle_under_its_name():
    from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule

    dm = SyntheticSeqDataModule(preset="tiny", max_history=0)
    m = dm.oracle_metrics("test")
    for label in ("click", "conversion"):
        assert m[f"{label}/oracle_auc"] == m[f"oracle_auc_{label}"] and 0.5 < m[f"{label}/oracle_auc"] < 1
        assert m[f"{label}/oracle_logloss"] == m[f"oracle_logloss_{label}"]
