"""``data.packing=user``: each user's training events tiled into non-overlapping segments
(recsys_lab/data/packing.py) on the synthetic world and on a generated MovieLens folder."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.movielens import MovieLensDataModule
from recsys_lab.data.packing import Tiling, tile_user_events
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule
from recsys_lab.data.synthetic.world import DAY
from tests.data.rawfiles import write_movielens


def brute_force_check(tiling: Tiling, n: int, train: np.ndarray, ts: np.ndarray, k: int | None) -> None:
    """Every training position in exactly one segment, no other position twice, windows of at most
    k strictly earlier events, candidates training positions."""
    cov = tiling.covered(n)
    assert (cov[train] == 1).all() and (cov[~train] <= 1).all()
    assert train[tiling.candidate].all()
    if k is not None:
        assert (tiling.end - tiling.start <= k).all()
    for c, s, e in zip(tiling.candidate, tiling.start, tiling.end):
        assert (ts[s:e] < ts[c]).all() and s <= e <= c


@pytest.mark.parametrize("k", [None, 0, 1, 3, 7])
def test_tiling_covers_every_training_event_once_with_and_without_ties(k):
    rng = np.random.default_rng(k or 0)
    for _ in range(40):
        sizes = rng.integers(1, 25, rng.integers(1, 5))
        first = np.r_[0, np.cumsum(sizes)[:-1]]
        n = int(sizes.sum())
        user = np.repeat(np.arange(sizes.size), sizes)
        # warm-up events (history only) before the training ones, held-out events after
        lo = first + rng.integers(0, sizes)
        hi = np.minimum(first + sizes, lo + rng.integers(0, 25, sizes.size))
        train = (np.arange(n) >= lo[user]) & (np.arange(n) < hi[user])
        ts = np.arange(n)  # no ties: histories by position
        tiling = tile_user_events(first, lo, hi, k)
        brute_force_check(tiling, n, train, ts, k)
        if k is not None:  # stride k + 1 back from the last training event
            cand_user = user[tiling.candidate]
            last = tiling.candidate[np.r_[cand_user[1:] != cand_user[:-1], True]]
            np.testing.assert_array_equal(last, (hi - 1)[hi > lo])
            same = np.diff(cand_user) == 0
            assert (np.diff(tiling.candidate)[same] == k + 1).all()
        # timestamp ties (many), training events from each user's first
        ts = np.concatenate([np.sort(rng.integers(0, max(2, s // 3), s)) for s in sizes])
        boundary = np.r_[True, (ts[1:] != ts[:-1]) | (user[1:] != user[:-1])]
        tie_first = np.maximum.accumulate(np.where(boundary, np.arange(n), 0))
        hi = first + sizes
        train = np.ones(n, bool)
        tiling = tile_user_events(first, first, hi, k, tie_first)
        brute_force_check(tiling, n, train, ts + user * 10_000, k)


def tiny_world(**kw) -> SyntheticSeqDataModule:
    dm = SyntheticSeqDataModule(preset="tiny", **{"batch_size": 128, "eval_batch_size": 1024, **kw})
    dm.setup()
    return dm


def all_batches(loader) -> list[Batch]:
    return list(loader)


@pytest.mark.parametrize("k", [8, None])
def test_synthetic_tiling_covers_every_training_day_event_exactly_once(k):
    dm = tiny_world(max_history=k, packing="user")
    log = dm.samples.log
    tiling = dm.train_tiling()
    days = dm.split_days["train"]
    day = log.ts // DAY
    train = (day >= days.start) & (day < days.stop)
    brute_force_check(tiling, len(log), train, np.arange(len(log)), k)
    # windows stay inside the user's own events
    assert (log.user[tiling.start] == log.user[tiling.candidate]).all()
    lo, hi = dm.split_range("train")
    if k is None:  # one segment per user with training events
        assert len(tiling) == np.unique(log.user[train]).size
    # The loader serves each segment once per epoch: its candidate and exactly the window's events.
    batches = all_batches(dm.train_dataloader())
    assert sum(b.size for b in batches) == len(tiling) < hi - lo
    assert max(b.size for b in batches) == 128  # batch_size counts segments
    got = sorted(
        (int(u), int(t), int(n))
        for b in batches
        for u, t, n in zip(b.user, b.extras["timestamp"], b.history.lengths())
    )
    want = sorted(
        zip(
            log.user[tiling.candidate].tolist(),
            log.ts[tiling.candidate].tolist(),
            (tiling.end - tiling.start).tolist(),
        )
    )
    assert got == want
    # history click bits plus candidate clicks = every training-day click, once (warm-up clicks
    # in the first windows aside)
    clicks = sum(float(b.labels["click"].sum()) + float((b.history.actions >> 1 & 1).sum()) for b in batches)
    warm_clicks = sum(
        int((log.action[s:e][day[s:e] < days.start] >> 1 & 1).sum()) for s, e in zip(tiling.start, tiling.end)
    )
    assert clicks - warm_clicks == int((log.action[train] >> 1 & 1).sum())


def test_validation_and_test_batches_are_unchanged_by_packing():
    per_sample, packed = tiny_world(max_history=8), tiny_world(max_history=8, packing="user")
    for split in ("val", "test"):
        a = next(iter(getattr(per_sample, f"{split}_dataloader")()))
        b = next(iter(getattr(packed, f"{split}_dataloader")()))
        assert torch.equal(a.sparse, b.sparse) and torch.equal(a.labels["click"], b.labels["click"])
        assert torch.equal(a.history.values, b.history.values) and torch.equal(
            a.history.offsets, b.history.offsets
        )
        assert torch.equal(a.extras["timestamp"], b.extras["timestamp"])


def test_packing_refuses_what_it_cannot_tile(tmp_path):
    with pytest.raises(ValueError, match=r"data\.domains=null"):
        tiny_world(packing="user", domains=[1]).train_tiling()
    with pytest.raises(ValueError, match="unknown"):
        tiny_world(packing="users")
    from recsys_lab.data.synthetic.stream_datamodule import SyntheticStreamDataModule

    with pytest.raises(ValueError, match="data=synthetic_seq or data=movielens"):
        SyntheticStreamDataModule(preset="tiny", packing="user")
    folder = write_movielens(tmp_path / "ml", "ml-1m")
    with pytest.raises(ValueError, match=r"data\.split=time"):
        MovieLensDataModule(
            path=str(folder), cache_dir=str(tmp_path / "c"), split="random", packing="user"
        ).train_tiling()


def write_movielens_with_ties(folder, seed: int = 0):
    """The generated ml-1m folder with coarse timestamps: many same-second groups per user."""
    write_movielens(folder, "ml-1m", users=12, ratings=500, seed=seed)
    path = folder / "ratings.dat"
    rows = [line.split("::") for line in path.read_text().splitlines()]
    rows = [(u, m, r, str(int(t) // 50_000 * 50_000)) for u, m, r, t in rows]
    path.write_text("".join("::".join(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("k", [3, 8, None])
def test_movielens_tiling_is_exact_with_timestamp_ties(tmp_path, k):
    folder = write_movielens_with_ties(tmp_path / "ml")
    dm = MovieLensDataModule(
        path=str(folder), cache_dir=str(tmp_path / "cache"), max_history=k, packing="user", batch_size=16
    )
    dm.setup()
    ts = np.asarray(dm.split_data("train").arrays["events/timestamps"])
    pairs = [tuple(line.split("::")[::3]) for line in (folder / "ratings.dat").read_text().splitlines()]
    assert max(Counter(pairs).values()) >= 3  # the file has real ties (same user, same second)
    rows, tiling = dm.train_tiling()
    train = dm.split_data("train")
    # training positions: each user's first ratings (leave-last-out); val/test positions are not
    is_train = np.zeros(ts.size, bool)
    start = np.asarray(train.arrays["hist_start"])
    for s in np.unique(start):
        is_train[s : s + int((start == s).sum())] = True
    brute_force_check(tiling, ts.size, is_train, ts + 0, k)
    # the candidate row's own strictly-earlier history ends where its window ends
    np.testing.assert_array_equal(np.asarray(train.arrays["hist_end"])[rows], tiling.end)
    if k is None:
        n_users = np.unique(np.asarray(train.arrays["user"])).size
        assert len(tiling) >= n_users  # one per user, plus tie-mates of a user's last training rating
    # the loader: every training rating once (candidate or history event), clicks add up
    batches = all_batches(dm.train_dataloader())
    assert sum(b.size for b in batches) == len(tiling)
    assert sum(b.size + b.history.num_events for b in batches) == len(train)
    clicks = sum(float(b.labels["click"].sum()) + float((b.history.actions & 1).sum()) for b in batches)
    assert clicks == float(np.asarray(train.arrays["click"]).sum())
    # evaluation batches are the per-sample ones
    per_sample = MovieLensDataModule(path=str(folder), cache_dir=str(tmp_path / "cache"), max_history=k)
    per_sample.setup()
    a, b = next(iter(per_sample.test_dataloader())), next(iter(dm.test_dataloader()))
    assert torch.equal(a.sparse, b.sparse) and torch.equal(a.history.values, b.history.values)
