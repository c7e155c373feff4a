"""MMoE: config, gates that sum to 1, per-label outputs, FLOPs, gradients and a two-label learning test."""

import torch

from recsys_lab.layers.multitask import Gate, MixtureOfExperts
from recsys_lab.models.mmoe import MMoE
from tests.models.conftest import assert_every_parameter_learns_from_both_labels, assert_learns_two_labels


def test_config_matches_constructor(config_matches):
    config_matches(MMoE, "mmoe")


def test_one_logit_per_label_and_forward_is_the_first(schema, embedding, two_label_batch):
    model = MMoE(schema, embedding, labels=("click", "conversion"), num_experts=3)
    out = model.forward_tasks(two_label_batch)
    assert set(out) == {"click", "conversion"} and all(v.shape == (16,) for v in out.values())
    assert torch.equal(model(two_label_batch), out["click"])
    assert not torch.allclose(out["click"], out["conversion"])


def test_gates_are_distributions_over_the_experts(schema, embedding, two_label_batch):
    model = MMoE(schema, embedding, num_experts=5)
    for w in model.gate_weights(two_label_batch).values():
        assert w.shape == (16, 5)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(16))


def test_the_mixture_is_the_gate_weighted_sum_of_the_experts():
    torch.manual_seed(0)
    moe = MixtureOfExperts(in_dim=6, num_experts=3, num_tasks=2, hidden_units=[4])
    x = torch.randn(5, 6)
    experts = torch.stack([e(x) for e in moe.experts.experts], dim=1)  # [B, K, H]
    for gate, out in zip(moe.gates, moe(x)):
        expected = torch.einsum("bk,bkh->bh", torch.softmax(gate.linear(x), -1), experts)
        torch.testing.assert_close(out, expected)
    # A gate whose logits favour one expert by far returns that expert's output.
    g = Gate(6, 3)
    with torch.no_grad():
        g.linear.weight.zero_()
        g.linear.bias.copy_(torch.tensor([0.0, 100.0, 0.0]))
    torch.testing.assert_close(g.mix(x, experts), experts[:, 1])


def test_flops_match_the_counter(schema, embedding, two_label_batch, flops_of):
    model = MMoE(schema, embedding, num_experts=3, expert_units=[16, 8], tower_units=[4])
    assert flops_of(model, two_label_batch) == model.flops_per_example()


def test_every_parameter_gets_a_gradient(schema, embedding):
    assert_every_parameter_learns_from_both_labels(MMoE(schema, embedding, num_experts=2))


def test_learns_two_planted_labels(schema, embedding):
    assert_learns_two_labels(MMoE(schema, embedding, num_experts=3, expert_units=[32], tower_units=[16]))
