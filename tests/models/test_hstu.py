"""HSTU ranking model: masks by perturbation, candidate permutation, per-user packing, FLOPs, config."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.layers.sequence import PackedSequence
from recsys_lab.models.hstu import HSTU
from recsys_lab.scaling.counting import measured_flops_per_example
from tests.layers.test_sequence import make_seq_batch, make_seq_schema, seq_embedding
from tests.models.conftest import assert_config_defaults


def hstu(**kwargs) -> HSTU:
    torch.manual_seed(0)
    defaults = dict(
        dim=16, num_layers=2, num_heads=2, qk_dim=4, v_dim=4, num_positions=8, time_buckets=16, head_units=[8]
    )
    return HSTU(make_seq_schema(), seq_embedding(), **{**defaults, **kwargs})


@pytest.mark.parametrize("kernel", ["reference", "padded"])
def test_candidates_see_history_not_each_other_and_permute(kernel):
    model = hstu(kernel=kernel).eval()
    offsets = torch.tensor([0, 6, 10])
    kind = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 2, 2])
    seg = torch.repeat_interleave(torch.arange(2), torch.tensor([6, 4]))
    ts = torch.tensor([5, 5, 9, 20, 20, 20, 3, 3, 8, 8])
    pos = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3])
    p = PackedSequence(
        offsets,
        ts,
        torch.zeros(10, dtype=torch.long),
        torch.tensor([3, 2]),
        kind,
        seg,
        torch.full((10,), -1),
        pos,
    )
    torch.manual_seed(1)
    x = torch.randn(10, 16)
    # Equal candidate positions need equal relative positions to be permutable: HSTU's position
    # bias sees i - j, which differs between candidates; zero it for this invariance.
    with torch.no_grad():
        for layer in model.layers:
            layer.pos_bias.zero_()
    h = model.trunk(x, p)
    perm = torch.tensor([0, 1, 2, 5, 3, 4, 6, 7, 9, 8])
    torch.testing.assert_close(model.trunk(x[perm], p), h[perm])
    x2 = x.clone()
    x2[4] = torch.randn(16)  # another candidate: invisible to candidates 3 and 5
    moved = ((model.trunk(x2, p) - h).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == [4]
    x2 = x.clone()
    x2[1] = torch.randn(16)  # a history event: seen by later tokens of its user only
    moved = ((model.trunk(x2, p) - h).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == [1, 2, 3, 4, 5]


def test_packing_is_per_user_and_kernels_agree():
    model = hstu(kernel="padded").eval()
    batch = make_seq_batch(5, seed=2)
    together = model(batch)
    alone = torch.cat([model(batch.select(torch.tensor([i]))) for i in range(5)])
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(hstu(kernel="reference").eval()(batch), together)


def test_a_later_event_changes_nothing_before_it_and_labels_never_enter():
    model = hstu().eval()
    batch = make_seq_batch(3, seed=3, min_len=4, max_len=4)
    base = model(batch)
    flipped = Batch(
        batch.dense,
        batch.sparse,
        {"click": 1 - batch.labels["click"]},
        batch.user,
        batch.history,
        extras=batch.extras,
    )
    torch.testing.assert_close(model(flipped), base)
    h = batch.history
    values = h.values.clone()
    values[5, 0] = (values[5, 0] % 28) + 1  # sample 1's event: only sample 1's score moves
    b2 = Batch(
        batch.dense,
        batch.sparse,
        batch.labels,
        batch.user,
        Jagged(values, h.actions, h.timestamps, h.offsets),
        extras=batch.extras,
    )
    diff = (model(b2) - base).abs()
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0


def test_flops_match_flop_counter():
    """All samples with exactly max_history events, the reference kernel (dense L × L per user)."""
    model = hstu(max_history=4).eval()
    batch = make_seq_batch(6, seed=4, min_len=4, max_len=4)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch)
    counted = counter.get_total_flops() / 6
    assert counted == pytest.approx(model.flops_per_example(), rel=0.05)


def test_flops_at_a_given_history_length():
    """Unbounded model, every sample with 5 events: ``flops_per_example(history_len=5)``."""
    model = hstu().eval()
    batch = make_seq_batch(4, seed=6, min_len=5, max_len=5)
    assert measured_flops_per_example(model, batch) == pytest.approx(
        model.flops_per_example(history_len=5), rel=1e-6
    )
    assert hstu(max_history=5).flops_per_example() == model.flops_per_example(history_len=5)


def test_gradients_reach_every_parameter():
    model = hstu()
    batch = make_seq_batch(8, seed=5, min_len=1)
    torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels["click"]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_runs_without_history():
    """Tabular data (no sequence features, no Batch.history): segments are [sink, candidate]."""
    from tests.models.conftest import make_batch, make_schema

    schema = make_schema()
    model = HSTU(schema, seq_embedding(), dim=8, num_heads=1, qk_dim=4, v_dim=4, head_units=[4])
    assert model(make_batch(4, seed=0)).shape == (4,)


def test_config_matches_constructor():
    assert_config_defaults(HSTU, "hstu")


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="num_layers"):
        hstu(num_layers=0)
    with pytest.raises(ValueError, match="unknown attention kernel"):
        hstu(kernel="nope")
