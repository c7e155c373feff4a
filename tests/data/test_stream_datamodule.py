"""``data=synthetic_stream``: one ordered pass over the days, per-day (prequential) evaluation with
per-day oracle metrics, rank sharding, and the CLI run of an existing model."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.data.synthetic.stream_datamodule import DayOrderedBatchSampler, SyntheticStreamDataModule
from recsys_lab.runners.train import run
from tests.conftest import compose_train


def tiny(**kwargs) -> SyntheticStreamDataModule:
    dm = SyntheticStreamDataModule(preset="tiny", **{"batch_size": 256, "eval_batch_size": 1024, **kwargs})
    dm.setup()
    return dm


def test_training_is_one_ordered_pass_over_the_training_days():
    dm = tiny(max_history=4)
    lo, hi = dm.split_range("train")
    batches = list(dm.train_dataloader())
    days = [b.extras["day"] for b in batches]
    assert all(int(d.min()) == int(d.max()) for d in days)  # a batch never spans two days
    order = [int(d[0]) for d in days]
    assert order == sorted(order) and order[0] == dm.days[0]
    assert sorted(set(order)) == list(dm.split_days["train"])
    ts = torch.cat([b.extras["timestamp"] for b in batches])
    assert ts.numel() == hi - lo  # every training sample exactly once
    first_day = torch.cat([b.extras["timestamp"] for b, d in zip(batches, order) if d == order[0]])
    assert not torch.all(first_day[1:] >= first_day[:-1])  # shuffled within the day
    assert all(b.privileged is None for b in batches)


def test_per_day_loaders_and_prequential_pairs():
    dm = tiny(privileged=True)
    assert dm.days == list(range(2, dm.spec.num_days))
    pairs = dm.prequential_days()
    assert pairs[0] == (dm.days[0], dm.days[0] + 1) and len(pairs) == len(dm.days) - 1
    train_day, eval_day = pairs[2]
    train_batches = list(dm.day_dataloader(train_day, train=True))
    eval_batches = list(dm.day_dataloader(eval_day))
    assert all(torch.all(b.extras["day"] == train_day) for b in train_batches)
    assert all(torch.all(b.extras["day"] == eval_day) for b in eval_batches)
    assert all(b.privileged is not None for b in train_batches)  # training batches: as configured
    assert all(b.privileged is None for b in eval_batches)  # evaluation batches: never
    ts = torch.cat([b.extras["timestamp"] for b in eval_batches])
    assert torch.all(ts[1:] >= ts[:-1])  # evaluation in time order
    with pytest.raises(ValueError, match="has no samples"):
        dm.day_dataloader(0)


def test_every_day_reports_its_oracle():
    dm = tiny()
    m = dm.day_oracle_metrics(dm.days[-1])
    assert m == pytest.approx(dm.oracle_metrics("test"))
    table = dm.oracle_by_day()
    assert [r["day"] for r in table] == dm.days
    for row in table:
        assert 0.7 < row["oracle_auc_click"] < 0.99 and row["oracle_logloss_click"] < 0.4
        assert 0 < row["click_rate"] < 0.2


def test_one_domain_per_vertical_model():
    sizes = {d: len(tiny(domains=[d]).samples) for d in (1, 2, 3)}
    assert sum(sizes.values()) == len(tiny().samples)
    assert sizes[1] > sizes[3]


def test_day_ordered_sampler_shards_ranks_disjointly():
    bounds = [(0, 10), (10, 25), (25, 26)]
    shards = [
        list(DayOrderedBatchSampler(bounds, 4, shuffle=True, seed=1, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    rows = [torch.cat(s) for s in shards]
    assert len(shards[0]) == len(shards[1]) == len(DayOrderedBatchSampler(bounds, 4, True, 1, 2, 0))
    assert not set(rows[0].tolist()) & set(rows[1].tolist())
    assert rows[0].numel() == rows[1].numel() == 5 + 7
    for shard in shards:  # day order kept on every rank
        day = [0 if int(b[0]) < 10 else 1 if int(b[0]) < 25 else 2 for b in shard]
        assert day == sorted(day)
    s = DayOrderedBatchSampler(bounds, 4, shuffle=True, seed=1)
    first = torch.cat(list(s))
    s.set_epoch(1)
    assert not torch.equal(torch.cat(list(s)), first)


@pytest.mark.usefixtures("hydra_ctx")
def test_cli_run_on_the_stream(tmp_path):
    cfg = compose_train(
        tmp_path,
        "data=synthetic_stream",
        "debug=tiny",
        "model=dnn",
        "model.hidden_units=[64,32]",
        "logger=none",
    )
    m = run(cfg)
    assert m["data"] == "synthetic_stream"
    assert 0.5 < m["test/auc"] < m["test/oracle_auc"]
    assert m["epochs"] == 1
