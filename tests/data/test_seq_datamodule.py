"""``data=synthetic_seq``: the Batch contract (histories, labels, oracle extras, privileged data),
splits, domains, the CLI run of an existing model, and the learnability gap on the tiny world."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import FeatureKind, FeatureRole
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule
from recsys_lab.data.synthetic.world import ACTION_NAMES, saturate
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.metrics import auc
from recsys_lab.models.dcnv2 import DCNv2
from recsys_lab.models.deepfm import DeepFM
from recsys_lab.models.dnn import DNN
from recsys_lab.runners.train import run
from tests.conftest import compose_train


def tiny(**kwargs) -> SyntheticSeqDataModule:
    dm = SyntheticSeqDataModule(preset="tiny", **{"batch_size": 512, "eval_batch_size": 2048, **kwargs})
    dm.setup()
    return dm


def first_batch(loader) -> Batch:
    return next(iter(loader))


def test_schema_describes_the_batches():
    dm = tiny(max_history=16)
    s = dm.schema
    assert s.action_names == ACTION_NAMES == ("exposure", "click", "conversion")
    assert [f.name for f in s.categorical] == [
        "user",
        "user_age",
        "user_gender",
        "user_region",
        "ad",
        "category",
        "domain",
        "position",
        "hour",
    ]
    assert [f.name for f in s.numeric] == ["user_tenure", "ad_age", "history_length"]
    assert [f.name for f in s.sequence] == ["hist_ad", "hist_category", "hist_domain"]
    assert s.user_feature().name == "user" and s["ad"].role is FeatureRole.ITEM
    assert s.labels == ("click", "conversion")
    b = first_batch(dm.train_dataloader())
    assert b.sparse.shape == (512, 9) and b.sparse.dtype == torch.int64 and b.dense.shape == (512, 3)
    for j, f in enumerate(s.categorical):
        assert 0 < int(b.sparse[:, j].min()) and int(b.sparse[:, j].max()) < f.vocab_size, f.name
    assert torch.equal(b.user, b.sparse[:, 0])
    assert set(b.labels) == {"click", "conversion"}
    assert {"true_prob", "true_prob_conversion", "true_prob_cvr", "timestamp", "day"} <= set(b.extras)
    assert torch.all(b.labels["conversion"] <= b.labels["click"])
    h = b.history
    assert h is not None and h.values.shape[1] == len(s.sequence) and h.values.dtype == torch.int64
    for j, f in enumerate(s.sequence):
        assert int(h.values[:, j].max()) < f.vocab_size and s.sequence[j].kind is FeatureKind.SEQUENCE
    assert b.privileged is None


def test_histories_are_the_users_latest_earlier_events():
    dm = tiny(max_history=8)
    samples, log = dm.samples, dm.samples.log
    b = first_batch(dm.val_dataloader())
    h = b.history
    h.validate()
    assert int(h.lengths().max()) <= 8
    seg = h.segment_ids()
    ts = b.extras["timestamp"]
    assert torch.all(h.timestamps < ts[seg])  # strictly before the sample
    # Oldest first, and the sample's own user's events.
    same = seg[1:] == seg[:-1]
    assert torch.all(h.timestamps[1:][same] > h.timestamps[:-1][same])
    lo, _ = dm.split_range("val")
    rows = samples.columns.log_row[lo : lo + len(b)]
    for i in (0, 5, 77):
        mine = np.flatnonzero((log.user == log.user[rows[i]]) & (log.ts < log.ts[rows[i]]))[-8:]
        got = h.values[h.offsets[i] : h.offsets[i + 1]]
        assert np.array_equal(got[:, 0].numpy(), log.item[mine])
        assert np.array_equal(h.actions[h.offsets[i] : h.offsets[i + 1]].numpy(), log.action[mine])
    # Action bits follow schema.action_names: every event is an exposure; conversions imply clicks.
    assert torch.all(h.actions & 1 == 1) and torch.all((h.actions & 4 == 0) | (h.actions & 2 == 2))
    # The history_length feature counts every earlier event, not only the K kept.
    assert torch.all(b.dense[:, 2] >= torch.log1p(h.lengths().float()) / np.log1p(1000.0) - 1e-6)


def test_max_history_truncates_and_zero_drops_the_history():
    full = first_batch(tiny(max_history=None).val_dataloader()).history
    short = first_batch(tiny(max_history=4).val_dataloader()).history
    assert int(full.lengths().max()) > 4
    assert torch.equal(short.lengths(), full.lengths().clamp(max=4))
    assert torch.equal(full.truncate(4).values, short.values)
    assert first_batch(tiny(max_history=0).val_dataloader()).history is None


def test_splits_are_consecutive_days_and_oracle_metrics_are_reported():
    dm = tiny()
    days = {
        s: set(dm.samples.columns.extras["day"][slice(*dm.split_range(s))].tolist())
        for s in ("train", "val", "test")
    }
    assert max(days["train"]) < min(days["val"]) <= max(days["val"]) < min(days["test"])
    assert min(days["train"]) == 2 and max(days["test"]) == dm.spec.num_days - 1
    m = dm.oracle_metrics("test")
    assert {"oracle_auc", "oracle_logloss", "oracle_auc_click", "oracle_auc_conversion"} <= set(m)
    assert m["oracle_auc"] == m["oracle_auc_click"] and 0.75 < m["oracle_auc"] < 0.98
    table = dm.oracle_by_day()
    assert [r["day"] for r in table] == list(range(2, dm.spec.num_days))
    assert {r["split"] for r in table} == {"train", "val", "test"} and all(r["rows"] > 0 for r in table)


def test_privileged_onboarding_only_in_training_batches_when_asked():
    plain = tiny(rows="conversions", label="retention")
    assert first_batch(plain.train_dataloader()).privileged is None
    dm = tiny(rows="conversions", label="retention", privileged=True)
    b = first_batch(dm.train_dataloader())
    assert dm.schema.labels == ("click", "conversion", "retention")
    assert torch.all(b.labels["click"] == 1) and torch.all(b.labels["conversion"] == 1)
    assert {"true_prob_retention", "observable_prob_retention"} <= set(b.extras)
    ob = b.privileged["onboarding"]
    ob.validate()
    assert ob.batch_size == len(b) and torch.all(ob.lengths() >= 1)  # every conversion has content
    assert ob.values.shape[1] == len(dm.onboarding_features)
    assert torch.all(ob.timestamps > b.extras["timestamp"][ob.segment_ids()])  # after the conversion
    for j, f in enumerate(dm.onboarding_features):
        assert 0 < int(ob.values[:, j].min()) and int(ob.values[:, j].max()) < f.vocab_size
    # Never in evaluation batches, and a serving model never gets it.
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert all(batch.privileged is None for batch in loader)
    assert b.for_serving().privileged is None
    m = dm.oracle_metrics("test")
    assert m["oracle_auc"] == m["oracle_auc_retention"] > m["observable_auc_retention"]


def test_privileged_val_puts_the_content_in_validation_batches_only():
    dm = tiny(rows="conversions", label="retention", privileged=True, privileged_val=True)
    val = list(dm.val_dataloader())
    assert val and all(
        b.privileged is not None and torch.all(b.privileged["onboarding"].lengths() >= 1) for b in val
    )
    assert all(b.privileged is None for b in dm.test_dataloader())  # test batches: never
    with pytest.raises(ValueError, match=r"privileged_val=true .* needs privileged=true"):
        SyntheticSeqDataModule(preset="tiny", rows="conversions", label="retention", privileged_val=True)


def test_privileged_content_of_exposure_rows_belongs_to_conversions_only():
    dm = tiny(privileged=True)
    b = first_batch(dm.train_dataloader())
    lengths = b.privileged["onboarding"].lengths()
    assert torch.equal(lengths > 0, b.labels["conversion"] > 0)


def test_domain_filter_serves_one_vertical():
    dm = tiny(domains=[2], max_history=None)
    b = first_batch(dm.train_dataloader())
    assert torch.all(b.sparse[:, dm.schema.categorical_index("domain")] == 2)
    assert int(b.history.values[:, 2].min()) == 1  # histories keep every domain
    everything = tiny()
    assert len(dm.samples) < 0.8 * len(everything.samples)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": "clicks"}, "rows='clicks' is unknown"),
        ({"label": "retention"}, "retention needs data.rows=conversions"),
        ({"domains": [9]}, r"must be non-empty ids in 1\.\.3"),
        ({"warmup_days": 6}, "leaves no training day"),
        ({"world": {"num_user": 3}}, "unknown knob"),
    ],
)
def test_bad_arguments_fail_at_start_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSeqDataModule(preset="tiny", **kwargs)


def test_loader_shuffles_reproducibly_and_covers_the_split():
    dm = tiny()
    lo, hi = dm.split_range("train")
    a = [b.extras["timestamp"] for b in dm.train_dataloader()]
    b = [b.extras["timestamp"] for b in dm.train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    ts = torch.cat(a)
    assert ts.numel() == hi - lo and not torch.all(ts[1:] >= ts[:-1])  # shuffled across days


@pytest.mark.parametrize("model_cls", [DNN, DeepFM, DCNv2])
def test_existing_models_take_the_batches(model_cls):
    dm = tiny(max_history=8)
    model = model_cls(dm.schema, functools.partial(FullEmbedding, dim=8, sparse_grad=False))
    b = first_batch(dm.train_dataloader())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), b.labels["click"])
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.usefixtures("hydra_ctx")
def test_cli_run_trains_and_reports_the_oracle(tmp_path):
    cfg = compose_train(
        tmp_path, "data=synthetic_seq", "debug=tiny", "model=dnn", "model.hidden_units=[64,32]", "logger=none"
    )
    m = run(cfg)
    assert m["data"] == "synthetic_seq"
    assert 0.5 < m["test/auc"] < m["test/oracle_auc"]
    assert m["test/oracle_auc"] == m["test/oracle_auc_click"]
    assert "test/oracle_auc_conversion" in m


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.c_[np.ones(len(x)), x]
    w = np.zeros(x.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1]), x.T @ (p - y))
    return w


def _train_dnn_without_history(dm: SyntheticSeqDataModule, y_test: torch.Tensor, epochs: int = 3) -> float:
    """Best test AUC of a small DNN over ``epochs`` epochs (one thread: the model is tiny, and
    numpy's BLAS threads may still be spinning)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = DNN(
            dm.schema, functools.partial(FullEmbedding, dim=8, sparse_grad=False), hidden_units=(64, 32)
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        best = 0.0
        for epoch in range(epochs):
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            for b in loader:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), b.labels["click"])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                probs = torch.cat([torch.sigmoid(model(b)) for b in dm.test_dataloader()])
            best = max(best, auc(probs, y_test))
        return best
    finally:
        torch.set_num_threads(threads)


def test_the_gap_to_the_oracle_is_real_and_learnable():
    """On the tiny world: logistic regression on the planted logit's own components reaches the
    oracle's test AUC; a DNN without history, trained to its best, stays clearly below."""
    dm = tiny(max_history=0, batch_size=256)
    c, log = dm.samples.columns, dm.samples.log
    cap = dm.spec.history_cap
    parts = log.logit_parts[c.log_row].astype(np.float64)
    features = np.stack([parts[:, 0], saturate(parts[:, 1] + parts[:, 2], cap)], 1)  # static, history
    lo, hi = dm.split_range("train")
    tlo, thi = dm.split_range("test")
    y_test = torch.from_numpy(c.labels["click"][tlo:thi])
    w = _fit_logistic(features[lo:hi], c.labels["click"][lo:hi].astype(np.float64))
    lr_auc = auc(torch.sigmoid(torch.from_numpy(w[0] + features[tlo:thi] @ w[1:])), y_test)
    oracle_auc = dm.oracle_metrics("test")["oracle_auc"]
    assert abs(lr_auc - oracle_auc) < 0.01, (lr_auc, oracle_auc)
    assert np.allclose(w[1:], 1.0, atol=0.25)  # the planted coefficients

    best = _train_dnn_without_history(dm, y_test)
    print(
        f"test AUC: oracle {oracle_auc:.4f}, LR on true components {lr_auc:.4f}, DNN without history {best:.4f}"
    )
    assert best < oracle_auc - 0.02, (best, oracle_auc)
    assert best > 0.6  # it learns something


@pytest.mark.usefixtures("hydra_ctx")
def test_cli_knobs_reach_the_world(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train(
        tmp_path,
        "data=synthetic_seq",
        "debug=fast_dev_run",
        "data.rows=conversions",
        "task.label=retention",
        "data.domains=[2]",
        "data.world.num_days=7",
        "data.world.history_depths=[2,8]",
    )
    dm = instantiate(cfg.data)
    assert dm.spec.num_days == 7 and dm.spec.history_depths == (2.0, 8.0) and dm.spec.num_users == 1000
    assert dm.label == "retention" and dm.domains == (2,) and dm.rows == "conversions"
