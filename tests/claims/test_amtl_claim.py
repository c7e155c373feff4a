"""AMTL's defining effect: a width per feature value, learned from frequency and field, stores
fewer embedding values at equal AUC when the fields need fewer dimensions than the table has. On a
task where every field's effect is a scalar per value (rank 1), AMTL (started without the
full-width bias, with a width penalty) keeps narrow rows at the full table's AUC. ``planted`` also
makes a rank-4 interaction task, used while developing (see the figures in the test)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.amtl import AMTLEmbedding
from recsys_lab.layers.embedding import FieldEmbedding, FullEmbedding
from recsys_lab.layers.mlp import MLP
from tests.claims.helpers import fit, held_out_auc, split

N, DIM, PENALTY = 20_000, 8, 0.01
VOCAB = (300, 40, 40)
SCHEMA = Schema(tuple(Feature(f"f{i}", "categorical", v) for i, v in enumerate(VOCAB)))


def planted(seed: int, rank_one: bool) -> tuple[Tensor, Tensor]:
    """ids ``[N, 3]`` (uniform) and clicks. ``rank_one``: logit = a[f0] + b[f1] + c[f2] (a scalar
    per value: one dimension suffices); otherwise logit = a[f0] + 1.5·<u[f1], w[f2]> (rank 4)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, v, (N,), generator=g) for v in VOCAB], 1)
    a = 1.5 * torch.randn(VOCAB[0], generator=g)
    u, w = torch.randn(VOCAB[1], 4, generator=g), torch.randn(VOCAB[2], 4, generator=g)
    if rank_one:
        logit = a[ids[:, 0]] + 1.5 * u[ids[:, 1], 0] + 1.5 * w[ids[:, 2], 0]
    else:
        logit = a[ids[:, 0]] + 1.5 * (u[ids[:, 1]] * w[ids[:, 2]]).sum(1)
    return ids, torch.bernoulli(torch.sigmoid(logit), generator=g)


def train_auc(emb: FieldEmbedding, ids: Tensor, y: Tensor, seed: int) -> float:
    train, test = split(N, seed=seed)
    torch.manual_seed(seed)
    mlp = MLP(len(VOCAB) * DIM, [32], 1)

    def f(i: Tensor) -> Tensor:
        return mlp(emb(ids[i]).flatten(1)).squeeze(-1)

    emb.train()
    fit(f, [*emb.parameters(), *mlp.parameters()], y, steps=150, lr=2e-2, rows=train)
    emb.eval()
    return held_out_auc(f, y, test)


def run(seed: int, rank_one: bool, penalty: float = PENALTY) -> dict[str, object]:
    ids, y = planted(seed, rank_one)
    torch.manual_seed(seed)
    full = FullEmbedding(SCHEMA, dim=DIM, sparse_grad=False, init_std=0.1)
    full_auc = train_auc(full, ids, y, seed)
    torch.manual_seed(seed)
    amtl = AMTLEmbedding(
        SCHEMA, dim=DIM, width_penalty=penalty, init_full_width=False, sparse_grad=False, init_std=0.1
    )
    amtl_auc = train_auc(amtl, ids, y, seed)
    widths = amtl.kept_widths()
    per_field = [float(w.float().mean()) for w in widths.split(list(VOCAB))]
    return {
        "full_auc": full_auc,
        "amtl_auc": amtl_auc,
        "full_values": full.table.weight.numel(),
        "amtl_values": amtl.stored_values(),
        "mean_width_per_field": per_field,
    }


@pytest.mark.claim
def test_amtl_stores_fewer_values_at_equal_auc_on_low_rank_fields() -> None:
    # Measured while writing this test (seeds 0, 1; penalty 0.01, 150 full-batch steps): on the
    # rank-1 task AMTL keeps widths 3 and 1 (1140 and 380 of 3040 values) at AUC 0.881 / 0.886
    # against the full table's 0.847 / 0.838. On the rank-4 task the same penalty also shrinks every
    # field to width 2 / 1 and loses 0.04-0.06 AUC: the widths follow the penalty, not each field's
    # need (all fields got the same width in every run), so the equal-AUC point needs a penalty sweep.
    r = run(seed=0, rank_one=True)
    assert r["amtl_auc"] >= r["full_auc"] - 0.01, r
    assert r["amtl_values"] <= 0.4 * r["full_values"], r
