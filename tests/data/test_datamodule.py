import torch

from recsys_lab.data.datamodule import EpochBatchSampler, TableSplit, table_loader


def make_table(n: int = 10) -> TableSplit:
    return TableSplit(
        dense=torch.arange(n, dtype=torch.float32)[:, None],
        sparse=torch.arange(n, dtype=torch.int32)[:, None],
        labels={"click": (torch.arange(n) % 2).float()},
        user=torch.arange(n),
    )


def test_loader_yields_batches_covering_each_row_once():
    loader = table_loader(make_table(10), batch_size=4, shuffle=True, seed=3)
    batches = list(loader)
    assert [len(b) for b in batches] == [4, 4, 2]
    rows = torch.cat([b.sparse[:, 0] for b in batches])
    assert sorted(rows.tolist()) == list(range(10))
    assert batches[0].sparse.dtype == torch.int64


def test_shuffle_depends_on_seed_and_epoch_only():
    a = EpochBatchSampler(100, 10, shuffle=True, seed=1)
    b = EpochBatchSampler(100, 10, shuffle=True, seed=1)
    assert torch.equal(torch.cat(list(a)), torch.cat(list(b)))
    first = torch.cat(list(a))
    a.set_epoch(1)
    assert not torch.equal(torch.cat(list(a)), first)
    b.set_epoch(1)
    assert torch.equal(torch.cat(list(a)), torch.cat(list(b)))


def test_ranks_get_disjoint_equal_shards():
    shards = [
        torch.cat(list(EpochBatchSampler(11, 3, shuffle=True, seed=0, num_replicas=2, rank=r)))
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    assert len(EpochBatchSampler(11, 3, shuffle=True, num_replicas=2, rank=0)) == 2


def test_drop_last():
    s = EpochBatchSampler(10, 4, shuffle=False, drop_last=True)
    assert [len(i) for i in s] == [4, 4] and len(s) == 2
