"""PCF-GNN's defining effect: pair statistics predicted by a GNN pre-trained on the co-occurrence
graph are useful cross features — better than no cross features, and still informative on pairs
never seen in training, where the exact statistics table can only answer its prior.

Planted world: two fields (60 values each) whose clicks depend only on a rank-2 interaction
``<a_u, b_i>`` (no main effects), observed on 4000 training rows, so many pairs are seen once or
never. The GNN and its pre-training are the project's (:class:`PCFGNN`, :class:`PCFPretrainTask`,
:func:`pair_features`); the downstream model is a logistic regression with per-value biases, with
or without ``logit(pair feature)``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from recsys_lab.data.datamodule import TableSplit
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.metrics import auc
from recsys_lab.models.pcf_gnn import PCFGNN
from recsys_lab.tasks.pcf import PCFPretrainTask, pair_features

V, TRAIN, TEST = 60, 4000, 10_000
SCHEMA = Schema((Feature("u", "categorical", V, "user"), Feature("i", "categorical", V, "item")))


def world(seed: int) -> tuple[TableSplit, TableSplit]:
    g = torch.Generator().manual_seed(seed)
    n = TRAIN + TEST
    sparse = torch.randint(1, V, (n, 2), generator=g)
    a, b = torch.randn(V, 2, generator=g), torch.randn(V, 2, generator=g)
    logit = -1.0 + 1.5 * (a[sparse[:, 0]] * b[sparse[:, 1]]).sum(1)
    y = torch.bernoulli(torch.sigmoid(logit), generator=g)

    def part(s: slice) -> TableSplit:
        return TableSplit(dense=torch.zeros(len(y[s]), 0), sparse=sparse[s], labels={"click": y[s]})

    return part(slice(0, TRAIN)), part(slice(TRAIN, None))


def logistic(train: TableSplit, test: TableSplit, cross: dict[str, Tensor] | None) -> Tensor:
    """Per-value biases (+ a weight on the centred logit of the pair feature); test probabilities."""
    bias = nn.Embedding(2 * V, 1)
    nn.init.zeros_(bias.weight)
    w = nn.Parameter(torch.zeros(2))

    def f(split: TableSplit, name: str) -> Tensor:
        z = bias(split.sparse + torch.tensor([0, V])).sum((1, 2)) + w[1]
        if cross is not None:
            z = z + w[0] * torch.logit(cross[name][:, 0].clamp(1e-4, 1 - 1e-4))
        return z

    opt = torch.optim.Adam([*bias.parameters(), w], lr=5e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(f(train, "train"), train.labels["click"]).backward()
        opt.step()
    with torch.no_grad():
        return torch.sigmoid(f(test, "test"))


def run(seed: int) -> dict[str, float]:
    train, test = world(seed)
    torch.manual_seed(seed)
    model = PCFGNN(SCHEMA, lambda s: FullEmbedding(s, dim=8, sparse_grad=False), num_pairs=1, hidden_dim=8)
    task = PCFPretrainTask(
        model, lambda ps: torch.optim.Adam(ps, lr=2e-2), field_pairs=[["u", "i"]], alpha=5.0
    )
    stats = task.fit_graph(train)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    edges = torch.arange(task.edge_u.numel())
    for _ in range(300):
        opt.zero_grad()
        task.loss(edges).backward()
        opt.step()
    with torch.no_grad():
        feats = pair_features(model, stats, {"train": train, "test": test})
    y = test.labels["click"]
    unseen = ~feats["test"]["seen"][:, 0]
    out = {"unseen_fraction": float(unseen.float().mean())}
    for name, cross in (
        ("none", None),
        ("gnn", {k: v["gnn"] for k, v in feats.items()}),
        ("exact", {k: v["exact"] for k, v in feats.items()}),
    ):
        p = logistic(train, test, cross)
        out[name], out[f"{name}_unseen"] = auc(p, y), auc(p[unseen], y[unseen])
    return out


@pytest.mark.claim
def test_gnn_cross_features_beat_none_and_help_on_unseen_pairs() -> None:
    # Seeds 0-2 while writing this test (31-33% of test rows are unseen pairs): GNN feature
    # 0.791 / 0.775 / 0.804 (unseen 0.779 / 0.770 / 0.793), none 0.536-0.548 (unseen 0.509-0.520),
    # exact table 0.668-0.679 (unseen 0.506-0.527). Here the GNN even beats the exact table: with
    # ~1 row per pair the table's smoothed CTRs are noisy, while the rank-2 world is easy for the GNN.
    r = run(seed=0)
    assert r["unseen_fraction"] > 0.1, r
    assert r["gnn"] > r["none"] + 0.15, r
    assert r["gnn_unseen"] > r["none_unseen"] + 0.15, r
    assert r["gnn_unseen"] > r["exact_unseen"] + 0.15, r  # the table knows nothing of unseen pairs
