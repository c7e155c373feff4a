"""PLE: config, gates, task isolation of the task-specific experts, FLOPs, gradients, learning."""

import torch

from recsys_lab.layers.multitask import ExtractionLayer
from recsys_lab.models.ple import PLE
from tests.models.conftest import assert_every_parameter_learns_from_both_labels, assert_learns_two_labels


def test_config_matches_constructor(config_matches):
    config_matches(PLE, "ple")


def test_a_task_ignores_the_other_tasks_experts_in_one_level():
    """With one extraction layer (CGC), task 0's output reads its own and the shared experts only:
    changing task 1's experts leaves it unchanged and changes task 1's output."""
    torch.manual_seed(0)
    layer = ExtractionLayer(
        6, num_tasks=2, num_task_experts=2, num_shared_experts=1, hidden_units=[4], shared_output=False
    )
    x = torch.randn(8, 6)
    before, shared = layer([x, x], x)
    assert shared is None
    with torch.no_grad():
        for p in layer.task_experts[1].parameters():
            p.add_(1.0)
    after, _ = layer([x, x], x)
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_gates_are_distributions(two_label_batch):
    torch.manual_seed(0)
    layer = ExtractionLayer(6, num_tasks=2, num_task_experts=2, num_shared_experts=3, hidden_units=[4])
    x = torch.randn(8, 6)
    for gate in [*layer.task_gates, layer.shared_gate]:
        w = gate(x)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(8))
    assert layer.task_gates[0](x).shape == (8, 5) and layer.shared_gate(x).shape == (8, 7)


def test_outputs_and_flops(schema, embedding, two_label_batch, flops_of):
    model = PLE(schema, embedding, num_levels=2, expert_units=[16, 8], tower_units=[4])
    out = model.forward_tasks(two_label_batch)
    assert set(out) == {"click", "conversion"} and out["click"].shape == (16,)
    assert flops_of(model, two_label_batch) == model.flops_per_example()


def test_every_parameter_gets_a_gradient(schema, embedding):
    model = PLE(schema, embedding, num_levels=2, expert_units=[8])
    assert_every_parameter_learns_from_both_labels(model)


def test_learns_two_planted_labels(schema, embedding):
    assert_learns_two_labels(PLE(schema, embedding, num_levels=1, expert_units=[32], tower_units=[16]))
