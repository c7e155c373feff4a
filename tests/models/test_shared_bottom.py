"""Shared-bottom: config, towers on one shared representation, FLOPs, gradients, two-label learning."""

import torch

from recsys_lab.models.shared_bottom import SharedBottom
from tests.models.conftest import assert_every_parameter_learns_from_both_labels, assert_learns_two_labels


def test_config_matches_constructor(config_matches):
    config_matches(SharedBottom, "shared_bottom")


def test_each_tower_reads_the_shared_bottom(schema, embedding, two_label_batch):
    model = SharedBottom(schema, embedding, labels=("click", "conversion", "extra"), bottom_units=[8])
    out = model.forward_tasks(two_label_batch)
    h = model.bottom(model.encoder(two_label_batch))
    for label, tower in zip(model.labels, model.towers.towers):
        torch.testing.assert_close(out[label], tower(h).squeeze(-1))
    assert torch.equal(model(two_label_batch), out["click"])


def test_flops_match_the_counter(schema, embedding, two_label_batch, flops_of):
    model = SharedBottom(schema, embedding, bottom_units=[16, 8], tower_units=[4])
    assert flops_of(model, two_label_batch) == model.flops_per_example()


def test_every_parameter_gets_a_gradient(schema, embedding):
    assert_every_parameter_learns_from_both_labels(SharedBottom(schema, embedding, bottom_units=[16]))


def test_learns_two_planted_labels(schema, embedding):
    assert_learns_two_labels(SharedBottom(schema, embedding, bottom_units=[32], tower_units=[16]))


def test_labels_must_be_distinct(schema, embedding):
    import pytest

    with pytest.raises(ValueError, match="distinct label names"):
        SharedBottom(schema, embedding, labels=("click", "click"))
