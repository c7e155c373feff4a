"""PCF-GNN as a model on its own (the pre-training task, the pair features and the chained run are
in tests/test_pcf_gnn.py): its config, its forward from the chosen pairs, its FLOPs."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.models.pcf_gnn import PCFGNN


def _with_graph(schema: Schema, embedding: EmbeddingFactory) -> PCFGNN:
    """Two chosen pairs, (c0, c1) and (c1, c3), with a few edges each."""
    torch.manual_seed(0)
    model = PCFGNN(schema, embedding, num_pairs=2, hidden_dim=8).eval()
    rows = model.embedding.field_offsets  # first global node row of each field
    src = [rows[0] + torch.tensor([1, 2, 3]), rows[1] + torch.tensor([1, 4])]
    dst = [rows[1] + torch.tensor([2, 2, 5]), rows[3] + torch.tensor([7, 1])]
    model.set_graph([(0, 1), (1, 3)], src, dst)
    return model


def test_config_matches_constructor(config_matches) -> None:
    config_matches(PCFGNN, "pcf_gnn")


def test_forward_mixes_the_chosen_pairs_predicted_ctr(schema, embedding, batch: Batch) -> None:
    """``logit = Σ_p w_p · logit(ctr_p) + b`` with ``ctr_p`` the predictor on the pair's two node
    states after message passing."""
    model = _with_graph(schema, embedding)
    assert model.num_edges == 5
    with torch.no_grad():
        model.pair_weight.copy_(torch.tensor([0.5, -2.0]))
        model.pair_bias.fill_(0.25)
        states = model.node_states()  # [N, 8]
        rows = batch.sparse + model.embedding.field_offsets  # [B, F] global node rows
        ctr = torch.sigmoid(
            torch.stack([model.pair_logits(states, rows[:, a], rows[:, b]) for a, b in [(0, 1), (1, 3)]], 1)
        ).clamp(1e-6, 1 - 1e-6)  # [B, 2]
        expected = 0.5 * torch.logit(ctr[:, 0]) - 2.0 * torch.logit(ctr[:, 1]) + 0.25
        torch.testing.assert_close(model(batch), expected)


def test_flops_count_the_predictor_and_the_amortised_message_passing(
    schema, embedding, batch: Batch, flops_of
) -> None:
    model = _with_graph(schema, embedding)
    assert flops_of(model, batch) == pytest.approx(model.flops_per_example(batch_size=len(batch)), abs=1)
    assert model.flops_per_example() == 2 * model.predictor.flops_per_example()


def test_pcf_gnn_rejects_tables_without_one_row_per_value(schema: Schema) -> None:
    from recsys_lab.layers.binary_hash import BinaryHashEmbedding

    with pytest.raises(ValueError, match="embedding=full"):
        PCFGNN(schema, lambda s: BinaryHashEmbedding(s, dim=8))
