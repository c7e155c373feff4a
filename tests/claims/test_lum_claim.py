"""LUM's defining effect: a user model pre-trained generatively (next item from the history, with
InfoNCE) and then queried (frozen) gives a downstream CTR model features that beat the same model
without them, when the users' tastes show in their histories and the downstream model meets new
users (so it cannot memorise user ids).

Planted world: 5 taste clusters of items (item i is in cluster i mod 5); each user has one taste
and draws 80% of their history from it; conditions are random (they say nothing of the item). A
candidate is clicked with probability 0.8 if it is in the user's taste, else 0.1. Pre-training,
downstream training and test use disjoint users. The LUM and its InfoNCE task are the project's;
the downstream model is a small MLP over the candidate item's embedding, with or without
:meth:`LUM.features`."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.metrics import auc
from recsys_lab.models.lum import LUM
from recsys_lab.objectives.info_nce import InfoNCE
from tests.models.test_lum import CATEGORIES, DOMAINS, ITEMS, lum_schema

TASTES, LENGTH = 5, 10


def users(n: int, seed: int) -> Batch:
    """``n`` samples (one per new user): a history of LENGTH events and a candidate, labelled."""
    g = torch.Generator().manual_seed(seed)
    taste = torch.randint(0, TASTES, (n,), generator=g)
    m = n * LENGTH
    own = 1 + TASTES * torch.randint(0, (ITEMS - 1) // TASTES, (m,), generator=g)  # 1, 6, 11, ...
    own = own + (taste.repeat_interleave(LENGTH) - 1) % TASTES  # an item of the user's taste
    other = torch.randint(1, ITEMS, (m,), generator=g)
    item = torch.where(torch.rand(m, generator=g) < 0.8, own, other).clamp(1, ITEMS - 1)
    values = torch.stack(
        [item, torch.randint(1, CATEGORIES, (m,), generator=g), torch.randint(1, DOMAINS, (m,), generator=g)],
        1,
    )
    offsets = torch.arange(n + 1) * LENGTH
    history = Jagged(values, torch.full((m,), 3), torch.arange(m), offsets)
    cand = torch.randint(1, ITEMS, (n,), generator=g)
    liked = (cand % TASTES) == taste
    click = torch.bernoulli(torch.where(liked, 0.8, 0.1), generator=g)
    sparse = torch.stack(
        [
            torch.zeros(n, dtype=torch.long),
            cand,
            torch.randint(1, CATEGORIES, (n,), generator=g),
            torch.randint(1, DOMAINS, (n,), generator=g),
        ],
        1,
    )
    return Batch(dense=torch.zeros(n, 1), sparse=sparse, labels={"click": click}, history=history)


def downstream_auc(train: Batch, test: Batch, lum: LUM | None, seed: int) -> float:
    torch.manual_seed(seed)
    item = nn.Embedding(ITEMS, 8)
    extra = 0
    feats: dict[int, Tensor] = {}
    if lum is not None:
        with torch.no_grad():
            feats = {id(b): lum.features(b) for b in (train, test)}
        extra = feats[id(train)].shape[1]
    mlp = nn.Sequential(nn.Linear(8 + extra, 32), nn.ReLU(), nn.Linear(32, 1))

    def f(b: Batch) -> Tensor:
        x = item(b.sparse[:, 1])
        if lum is not None:
            x = torch.cat([x, feats[id(b)]], 1)
        return mlp(x).squeeze(-1)

    opt = torch.optim.Adam([*item.parameters(), *mlp.parameters()], lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(f(train), train.labels["click"]).backward()
        opt.step()
    with torch.no_grad():
        return auc(torch.sigmoid(f(test)), test.labels["click"])


def run(seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    lum = LUM(
        lum_schema(),
        functools.partial(FullEmbedding, dim=8, sparse_grad=False),
        dim=16,
        num_layers=1,
        num_heads=2,
        max_history=LENGTH,
        condition_dropout=0.0,
    )
    objective = InfoNCE(num_sampled_negatives=16, num_in_batch_negatives=64, temperature=0.1)
    pretrain = users(256, seed=1000 + seed)
    opt = torch.optim.Adam(lum.parameters(), lr=3e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(120):
        loss, _ = objective.infonce(lum, pretrain, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lum.eval()
    train, test = users(1000, seed=2000 + seed), users(4000, seed=3000 + seed)
    return {
        "with_lum": downstream_auc(train, test, lum, seed),
        "without": downstream_auc(train, test, None, seed),
    }


@pytest.mark.claim
def test_lum_features_beat_no_lum_for_new_users() -> None:
    # Seeds 0, 1 while writing this test: with LUM features 0.758 / 0.678, without 0.493 / 0.507
    # (the candidate alone says nothing: every item is liked by one taste in five). Pre-training is
    # the slow part: with 60 steps at lr 1e-2 the InfoNCE has not left its plateau and the gain is 0.
    r = run(seed=0)
    assert r["with_lum"] > r["without"] + 0.1, r
