"""LUM: the causal <condition, item> mask and the query masks by perturbation, features that never
see later events, batching invariance, FLOPs, gradients and the config."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.lum import LUM
from recsys_lab.scaling.counting import measured_flops_per_example
from tests.models.conftest import counted_flops_per_example

ITEMS, CATEGORIES, DOMAINS = 30, 6, 3


def lum_schema() -> Schema:
    cat, seq = "categorical", "sequence"
    return Schema(
        features=(
            Feature("user", cat, 10, "user"),
            Feature("ad", cat, ITEMS, "item"),
            Feature("category", cat, CATEGORIES),
            Feature("domain", cat, DOMAINS),
            Feature("n0", "numeric"),
            Feature("hist_ad", seq, ITEMS),
            Feature("hist_category", seq, CATEGORIES),
            Feature("hist_domain", seq, DOMAINS),
        ),
        action_names=("exposure", "click", "conversion"),
    )


def lum_batch(lengths: list[int], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, n = len(lengths), sum(lengths)
    values = torch.stack(
        [torch.randint(1, v, (n,), generator=g) for v in (ITEMS, CATEGORIES, DOMAINS)], dim=1
    )  # [N, 3]
    offsets = torch.zeros(b + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths), 0)
    history = Jagged(values, torch.randint(1, 8, (n,), generator=g), torch.arange(n), offsets)
    sparse = torch.stack(
        [torch.randint(1, v, (b,), generator=g) for v in (10, ITEMS, CATEGORIES, DOMAINS)], dim=1
    )
    return Batch(
        dense=torch.randn(b, 1, generator=g),
        sparse=sparse,
        labels={"click": torch.randint(0, 2, (b,), generator=g).float()},
        history=history,
    )


def make_lum(**kw) -> LUM:
    torch.manual_seed(0)
    args = dict(dim=16, num_layers=2, num_heads=2, max_history=12, condition_dropout=0.0)
    args.update(kw)
    return LUM(lum_schema(), functools.partial(FullEmbedding, dim=8, sparse_grad=False), **args).eval()


def test_condition_outputs_are_causal_and_never_see_their_own_item():
    model = make_lum()
    batch = lum_batch([10])
    items, conds, actions, mask = model.history(batch)
    h, _ = model.encode(items, conds, actions, mask)  # [1, L, D]
    j = 5
    # Changing event j's item and action (its item token) leaves h_0..h_j unchanged: the condition
    # token c_j predicts i_j without seeing it ...
    items2, actions2 = items.clone(), actions.clone()
    items2[0, j], actions2[0, j] = (items[0, j] % (ITEMS - 1)) + 1, 0
    h2, _ = model.encode(items2, conds, actions2, mask)
    torch.testing.assert_close(h2[:, : j + 1], h[:, : j + 1])
    # ... but the next condition reads it.
    assert (h2[:, j + 1] - h[:, j + 1]).abs().max() > 1e-4
    # Changing event j's condition changes h_j but not earlier outputs.
    conds3 = conds.clone()
    conds3[0, j, 0] = (conds[0, j, 0] % (CATEGORIES - 1)) + 1
    h3, _ = model.encode(items, conds3, actions, mask)
    torch.testing.assert_close(h3[:, :j], h[:, :j])
    assert (h3[:, j] - h[:, j]).abs().max() > 1e-4


def test_queries_are_masked_from_each_other_and_see_the_whole_history():
    model = make_lum()
    batch = lum_batch([7, 0, 12])
    items, conds, actions, mask = model.history(batch)
    queries = model.query_conditions(batch)  # [B, Q, C]
    assert queries.shape == (3, model.num_queries, 2) and model.num_queries == DOMAINS
    h, q = model.encode(items, conds, actions, mask, queries)
    # Appending queries does not change the history outputs (nothing in the history reads them).
    h0, _ = model.encode(items, conds, actions, mask)
    torch.testing.assert_close(h, h0)
    # Perturbing query 0's condition changes query 0 only.
    queries2 = queries.clone()
    queries2[:, 0, 1] = DOMAINS - 1
    _, q2 = model.encode(items, conds, actions, mask, queries2)
    assert (q2[:, 0] - q[:, 0]).abs().max() > 1e-4
    torch.testing.assert_close(q2[:, 1:], q[:, 1:])
    # Every query sees the oldest kept event of a history.
    items3 = items.clone()
    items3[0, 0] = (items[0, 0] % (ITEMS - 1)) + 1
    _, q3 = model.encode(items3, conds, actions, mask, queries)
    assert ((q3[0] - q[0]).abs().amax(-1) > 1e-5).all()
    torch.testing.assert_close(q3[1:], q[1:])  # other samples untouched


def test_features_of_a_sample_ignore_later_events_of_its_user():
    """Two samples of one user: the later one's history extends the earlier one's. Changing the
    events after the earlier sample (and the later candidate) leaves the earlier sample's features
    unchanged, and they equal the features computed for it alone; the later sample's do change."""
    model = make_lum()
    base = lum_batch([11], seed=3)
    early, late = 6, 11
    values, actions, ts = base.history.values, base.history.actions, base.history.timestamps

    def two_samples(values: torch.Tensor, actions: torch.Tensor) -> Batch:
        rows = torch.cat([torch.arange(early), torch.arange(late)])
        history = Jagged(values[rows], actions[rows], ts[rows], torch.tensor([0, early, early + late]))
        sparse = base.sparse.repeat(2, 1)
        return Batch(torch.zeros(2, 1), sparse, {"click": torch.zeros(2)}, history=history)

    f = model.features(two_samples(values, actions))
    values2, actions2 = values.clone(), actions.clone()
    values2[early:, 0] = (values[early:, 0] % (ITEMS - 1)) + 1  # later items ...
    values2[early:, 1] = (values[early:, 1] % (CATEGORIES - 1)) + 1  # ... categories ...
    actions2[early:] = 0  # ... and actions
    f2 = model.features(two_samples(values2, actions2))
    torch.testing.assert_close(f2[0], f[0])
    assert (f2[1] - f[1]).abs().max() > 1e-4
    alone = model.features(
        Batch(
            torch.zeros(1, 1),
            base.sparse,
            {"click": torch.zeros(1)},
            history=Jagged(values[:early], actions[:early], ts[:early], torch.tensor([0, early])),
        )
    )
    torch.testing.assert_close(alone[0], f[0], rtol=1e-5, atol=1e-5)


def test_features_layout_and_batching_invariance():
    model = make_lum()
    batch = lum_batch([0, 3, 15, 8])
    feats = model.features(batch)
    q, d = model.num_queries, model.dim
    assert feats.shape == (4, q * d + d + q) and len(model.feature_names()) == feats.shape[1]
    # The cosines are those of the stored query outputs and item embedding.
    queries, item = feats[:, : q * d].view(4, q, d), feats[:, q * d : q * d + d]
    sims = torch.nn.functional.cosine_similarity(queries, item[:, None], dim=-1)
    torch.testing.assert_close(feats[:, -q:], sims)
    # A sample's features do not depend on the other samples of its batch (or their padding).
    for i in range(4):
        one = model.features(batch.select(torch.tensor([i])))
        torch.testing.assert_close(one[0], feats[i], rtol=1e-5, atol=1e-5)
    # forward = the target query's cosine.
    torch.testing.assert_close(model(batch), sims[:, -1])


def test_history_longer_than_max_history_keeps_the_latest_events():
    model = make_lum(max_history=4)
    batch = lum_batch([9])
    f = model.features(batch)
    h = batch.history
    values = h.values.clone()
    values[:5, 0] = 1  # events older than the last 4 do not matter
    f2 = model.features(
        Batch(
            batch.dense,
            batch.sparse,
            batch.labels,
            history=Jagged(values, h.actions, h.timestamps, h.offsets),
        )
    )
    torch.testing.assert_close(f2, f)


def test_flops_match_the_counter_on_full_histories():
    model = make_lum(max_history=6)
    batch = lum_batch([6, 6, 9])  # every history fills max_history
    t, d = 2 * 6 + model.num_queries, model.dim
    attention = 2 * (2 * 2 * t * t * d)  # 2 layers × (QKᵀ + AV) over every (query, key) pair
    # Plain FlopCounterMode does not count the CPU fused attention kernel ...
    assert counted_flops_per_example(model, batch) == model.flops_per_example() - attention
    # ... which measured_flops_per_example adds, as torch counts the CUDA kernels.
    assert measured_flops_per_example(model, batch) == model.flops_per_example()


def test_every_parameter_learns_from_the_infonce_and_the_score():
    model = make_lum().train()
    batch = lum_batch([4, 9, 12])
    items, conds, actions, mask = model.history(batch)
    h, _ = model.encode(items, conds, actions, mask)
    loss = model(batch).sum() + (h * model.item_embedding(items)).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_clear_errors():
    emb = functools.partial(FullEmbedding, dim=8)
    flat = Schema(features=(Feature("ad", "categorical", 5),))
    with pytest.raises(ValueError, match="sequence features"):
        LUM(flat, emb)
    with pytest.raises(ValueError, match="query_feature"):
        LUM(lum_schema(), emb, query_feature="hist_ad")
    with pytest.raises(ValueError, match=r"needs Batch\.history"):
        make_lum()(Batch(torch.zeros(1, 1), torch.ones(1, 4, dtype=torch.long), {"click": torch.zeros(1)}))


def test_config_targets_the_model_with_its_defaults():
    cfg = OmegaConf.to_object(OmegaConf.load(Path(__file__).parents[2] / "conf" / "model" / "lum.yaml"))
    assert cfg.pop("_target_") == "recsys_lab.models.lum.LUM"
    params = inspect.signature(LUM.__init__).parameters
    assert set(cfg) == set(params) - {"self", "schema", "embedding"}
    for key, value in cfg.items():
        default = params[key].default
        assert value == (list(default) if isinstance(default, tuple) else default), key
    assert LUM(lum_schema(), functools.partial(FullEmbedding, dim=8), **cfg).num_params() > 0
