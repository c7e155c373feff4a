"""BH's defining effect: a binary code of ``code_bits ≥ ceil(log2 V)`` bits cut into blocks gives
(almost) every value its own combination of block rows, so a table ~100× smaller than the full one
keeps most of the full table's AUC lift over 0.5, far more than the hashing trick at the same
table size (which merges values into buckets). The planted field has Zipf value frequencies, like
the id fields the paper compresses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.binary_hash import BinaryHashEmbedding
from recsys_lab.layers.embedding import FieldEmbedding, FullEmbedding, HashedEmbedding
from recsys_lab.layers.mlp import MLP
from tests.claims.helpers import fit, held_out_auc, split

V, N, DIM = 4096, 20_000, 8
SCHEMA = Schema((Feature("id", "categorical", V),))


def planted(seed: int) -> tuple[Tensor, Tensor]:
    """ids ``[N, 1]`` (Zipf 1.1 over 1..V-1) and clicks ``[N]``: logit = a per-value effect ~ N(0, 1.5²)."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, V, dtype=torch.float64) ** -1.1
    ids = torch.multinomial(weights, N, replacement=True, generator=g) + 1
    effect = 1.5 * torch.randn(V, generator=g)
    y = torch.bernoulli(torch.sigmoid(effect[ids]), generator=g)
    return ids.unsqueeze(1), y


def lift(emb: FieldEmbedding, ids: Tensor, y: Tensor, seed: int) -> float:
    train, test = split(N, seed=seed)
    torch.manual_seed(seed)
    mlp = MLP(DIM, [16], 1)

    def f(i: Tensor) -> Tensor:
        return mlp(emb(ids[i]).flatten(1)).squeeze(-1)

    fit(f, [*emb.parameters(), *mlp.parameters()], y, steps=200, lr=3e-2, rows=train)
    return held_out_auc(f, y, test) - 0.5


def lifts(seed: int) -> dict[str, float]:
    ids, y = planted(seed)
    code_bits = math.ceil(math.log2(V))  # 12
    bh = BinaryHashEmbedding(
        SCHEMA, dim=DIM, block_bits=3, code_bits=code_bits, sparse_grad=False, init_std=0.1
    )
    ratio = bh.table_ratio(SCHEMA)
    full = FullEmbedding(SCHEMA, dim=DIM, sparse_grad=False, init_std=0.1)
    hashed = HashedEmbedding(SCHEMA, dim=DIM, compression=ratio, sparse_grad=False, init_std=0.1)
    return {
        "ratio": ratio,
        "full": lift(full, ids, y, seed),
        "bh": lift(bh, ids, y, seed),
        "hashed": lift(hashed, ids, y, seed),
    }


@pytest.mark.claim
def test_bh_keeps_most_of_the_lift_at_100x() -> None:
    r = lifts(seed=0)
    assert r["ratio"] >= 100, r
    # Measured while writing this test (seeds 0, 1; 200 full-batch steps): BH keeps 92% and 88% of
    # the full table's lift at 128x; the hashing trick at the same size keeps 63% and 59%. The
    # paper's 99% is not reached at this budget (see docs/results.md's claims table).
    assert r["bh"] >= 0.85 * r["full"], r
    assert r["bh"] > r["hashed"] + 0.04, r
