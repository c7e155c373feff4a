"""DIN-style target attention: the pooling formula, no-history samples, per-user jagged pooling,
learning a history task, config."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.models.din import DIN
from recsys_lab.scaling.counting import measured_flops_per_example
from tests.layers.test_sequence import make_seq_batch, make_seq_schema, seq_embedding
from tests.models.conftest import assert_config_defaults, train_losses


def din(**kwargs) -> DIN:
    torch.manual_seed(0)
    defaults = dict(attention_units=[8], hidden_units=[16])
    return DIN(make_seq_schema(), seq_embedding(), **{**defaults, **kwargs})


@pytest.mark.parametrize("pooling", ["sum", "softmax"])
def test_pooling_equals_its_formula(pooling):
    model = din(pooling=pooling)
    batch = make_seq_batch(4, seed=0, min_len=0, max_len=5)
    q = model.events.candidates(batch.sparse).flatten(1)
    pooled = model.pool(q, batch.history)
    h = batch.history
    for b in range(4):
        s, e = int(h.offsets[b]), int(h.offsets[b + 1])
        if s == e:
            assert pooled[b].abs().sum() == 0  # no history pools to zero
            continue
        ej = model.events.history(h.values[s:e]).flatten(1)
        k = torch.cat([ej, model.action_embedding(h.actions[s:e])], dim=1)
        qb = q[b].expand_as(ej)
        w = model.attention(torch.cat([k, qb, ej - qb, ej * qb], dim=1)).squeeze(-1)
        if pooling == "softmax":
            w = torch.softmax(w, 0)
        torch.testing.assert_close(pooled[b], (w[:, None] * k).sum(0))


def test_samples_are_scored_independently_and_truncation_keeps_the_latest():
    model = din().eval()
    batch = make_seq_batch(5, seed=1)
    together = model(batch)
    alone = torch.cat([model(batch.select(torch.tensor([i]))) for i in range(5)])
    torch.testing.assert_close(together, alone)
    short = din(max_history=2).eval()
    b2 = make_seq_batch(5, seed=1)
    b2.history = b2.history.truncate(2)
    torch.testing.assert_close(short(batch), din().eval()(b2))


def test_learns_a_history_task():
    train, test = (
        make_seq_batch(512, seed=10, min_len=1, max_len=6),
        make_seq_batch(512, seed=11, min_len=1, max_len=6),
    )
    model = din(attention_units=[32], hidden_units=[32])
    losses = train_losses(model, train, steps=60, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0]
    from recsys_lab.metrics import auc

    with torch.no_grad():
        score = auc(torch.sigmoid(model.eval()(test)), test.labels["click"])
    assert score > 0.7, score


def test_gradients_reach_every_parameter():
    model = din()
    batch = make_seq_batch(16, seed=2, min_len=1)
    torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels["click"]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_flops_count_attention_per_event():
    model = din(max_history=4)
    mlp, att = model.mlp.flops_per_example(), model.attention.flops_per_example()
    assert model.flops_per_example() == mlp + 4 * att  # default: max_history events
    assert model.flops_per_example(history_len=3) == mlp + 3 * att
    assert model.flops_per_example(history_len=9) == mlp + 4 * att  # forward keeps 4
    assert din().flops_per_example() == mlp + 64 * att  # unbounded: 64 assumed


def test_flops_match_flop_counter_at_the_history_length():
    model = din().eval()
    batch = make_seq_batch(5, seed=3, min_len=7, max_len=7)
    assert measured_flops_per_example(model, batch) == model.flops_per_example(history_len=7)


def test_config_matches_constructor():
    assert_config_defaults(DIN, "din")


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="pooling"):
        din(pooling="mean")
    with pytest.raises(ValueError, match="max_history"):
        din(max_history=-1)
