import functools
import itertools

import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory, FullEmbedding, HashedEmbedding
from recsys_lab.models.deepfm import DeepFM

GOLDEN = {
    "table": [-0.0245551, -0.009619, -0.05736, -0.0629464],
    "tied": [-0.0313254, -0.0321958, -0.0293685, -0.0260128],
}


@pytest.mark.parametrize("first_order", ["table", "tied"])
def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch, first_order: str) -> None:
    """torch.manual_seed(0), default DeepFM (but first_order), conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = DeepFM(schema, embedding, first_order=first_order).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN[first_order]), atol=1e-5, rtol=0)


def test_fm_term_equals_brute_force_pairwise_sum(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch
) -> None:
    torch.manual_seed(0)
    model = DeepFM(schema, embedding, hidden_units=[4]).eval()
    enc = model.encoder
    tokens = enc.tokens(enc.embed(batch), enc.numeric(batch)).double()  # [B, F + Dn, D]
    n = tokens.shape[1]
    assert n == 4 + 3
    brute = sum((tokens[:, i] * tokens[:, j]).sum(-1) for i, j in itertools.combinations(range(n), 2))
    torch.testing.assert_close(model.fm(tokens), brute)


def test_logit_is_sum_of_first_order_fm_and_deep(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch
) -> None:
    torch.manual_seed(0)
    model = DeepFM(schema, embedding, hidden_units=[4]).eval()
    with torch.no_grad():
        for p in model.first_order.parameters():
            p.normal_()  # make every part visible
        for p in model.encoder.parameters():
            p.mul_(30)
    enc = model.encoder
    emb = enc.embedding.table.weight[batch.sparse + enc.embedding.field_offsets]  # [B, F, D]
    num = batch.dense[:, :, None] * enc.numeric_embedding.weight  # [B, Dn, D]
    tokens = torch.cat([emb, num], dim=1)
    lr_w = model.first_order.table.table.weight[:, 0][batch.sparse + enc.embedding.field_offsets]  # [B, F]
    lr = lr_w.sum(1) + batch.dense @ model.first_order.numeric.weight[0] + model.first_order.bias
    fm = 0.5 * (tokens.sum(1).pow(2) - tokens.pow(2).sum(1)).sum(1)
    deep = model.mlp(tokens.flatten(1)).squeeze(-1)
    assert lr.abs().min() > 0 and fm.abs().min() > 0
    torch.testing.assert_close(model(batch), lr + fm + deep)


@pytest.mark.parametrize(
    "kwargs", [{}, {"first_order": "tied"}, {"hidden_units": [16], "batch_norm": True, "dropout": 0.2}]
)
def test_flops_match_flop_counter(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch, flops_of, kwargs
) -> None:
    model = DeepFM(schema, embedding, **kwargs).eval()
    assert model.flops_per_example() == flops_of(model, batch)
    if not kwargs:  # numeric LR + MLP over (F + Dn)·D inputs
        d = (4 + 3) * 8
        assert model.flops_per_example() == 2 * 3 + 2 * (d * 256 + 256 * 128 + 128)


def test_param_counts(schema: Schema, embedding: EmbeddingFactory) -> None:
    vocab = 5 + 10 + 20 + 50
    table = DeepFM(schema, embedding, hidden_units=[4])
    assert table.num_params(embedding=True, dense=False) == vocab * 8 + vocab  # embedding + LR weights
    d = (4 + 3) * 8
    dense = 3 * 8 + 3 + 1 + (d * 4 + 4) + (4 + 1)  # numeric tokens, numeric LR, bias, MLP
    assert table.num_params(embedding=False, dense=True) == dense
    tied = DeepFM(schema, embedding, hidden_units=[4], first_order="tied")
    assert tied.num_params(embedding=True, dense=False) == vocab * 8
    assert tied.num_params(embedding=False, dense=True) == dense + 4 * 8


def test_first_order_table_matches_embedding_gradient_kind(schema: Schema) -> None:
    sparse = DeepFM(schema, functools.partial(FullEmbedding, dim=4, sparse_grad=True), hidden_units=[4])
    assert sparse.first_order.table.table.sparse
    hashed = DeepFM(schema, functools.partial(HashedEmbedding, dim=4, sparse_grad=False), hidden_units=[4])
    assert not hashed.first_order.table.table.sparse


@pytest.mark.parametrize("first_order", ["table", "tied"])
def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients, first_order) -> None:
    check_gradients(DeepFM(schema, embedding, hidden_units=[8], first_order=first_order), batch)


def test_sparse_gradients(schema: Schema, batch: Batch, check_gradients) -> None:
    check_gradients(DeepFM(schema, functools.partial(FullEmbedding, dim=4), hidden_units=[8]), batch)


@pytest.mark.parametrize("first_order", ["table", "tied"])
def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns, first_order: str) -> None:
    torch.manual_seed(0)
    learns(DeepFM(schema, embedding, hidden_units=[32, 16], first_order=first_order))


def test_config(config_matches) -> None:
    config_matches(DeepFM, "deepfm")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_units": []}, "at least one hidden layer"),
        ({"first_order": "none"}, "first-order weights"),
        ({"activation": "swish"}, "activation"),
    ],
)
def test_bad_settings_raise(schema: Schema, embedding: EmbeddingFactory, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeepFM(schema, embedding, **kwargs)


def test_misspelt_argument_raises_type_error(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(TypeError):
        DeepFM(schema, embedding, first_ordre="table")  # type: ignore[call-arg]
