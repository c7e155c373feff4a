import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.models.dnn import DNN


def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """torch.manual_seed(0), default DNN, conftest's batch (generator seed 0), eval mode."""
    torch.manual_seed(0)
    model = DNN(schema, embedding).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(
        logits[:4], torch.tensor([0.0951638, 0.1182218, 0.0730884, 0.0807636]), atol=1e-5, rtol=0
    )


def test_forward_is_mlp_of_flat_input(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    model = DNN(schema, embedding, hidden_units=[4]).eval()
    emb = model.encoder.embedding.table.weight
    rows = batch.sparse + model.encoder.embedding.field_offsets
    x = torch.cat([emb[rows].flatten(1), batch.dense], dim=1)  # [B, F·D + Dn]
    l1, l2 = model.mlp.net[0], model.mlp.net[2]
    expected = (torch.relu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias).squeeze(-1)
    torch.testing.assert_close(model(batch), expected)


@pytest.mark.parametrize("kwargs", [{}, {"hidden_units": [16], "batch_norm": True, "activation": "gelu"}])
def test_flops_match_flop_counter(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch, flops_of, kwargs
) -> None:
    model = DNN(schema, embedding, **kwargs).eval()
    assert model.flops_per_example() == flops_of(model, batch)
    if not kwargs:
        d = model.encoder.flat_dim
        assert d == 4 * 8 + 3
        assert model.flops_per_example() == 2 * (d * 256 + 256 * 128 + 128)


def test_param_counts(schema: Schema, embedding: EmbeddingFactory) -> None:
    model = DNN(schema, embedding, hidden_units=[4])
    assert model.num_params(embedding=True, dense=False) == (5 + 10 + 20 + 50) * 8
    d = 4 * 8 + 3
    assert model.num_params(embedding=False, dense=True) == d * 4 + 4 + 4 + 1


def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients) -> None:
    check_gradients(DNN(schema, embedding, batch_norm=True, dropout=0.1), batch)


def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns) -> None:
    torch.manual_seed(0)
    learns(DNN(schema, embedding, hidden_units=[32, 16]))


def test_config(config_matches) -> None:
    config_matches(DNN, "dnn")


def test_empty_hidden_units_raise(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match="at least one hidden layer"):
        DNN(schema, embedding, hidden_units=[])


def test_misspelt_argument_raises_type_error(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(TypeError):
        DNN(schema, embedding, hiden_units=[8])  # type: ignore[call-arg]
