import functools

import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding, HashedEmbedding
from recsys_lab.layers.features import FeatureEncoder, NumericEmbedding, uses_sparse_gradients


def _schema(num_numeric: int = 2) -> Schema:
    cats = [Feature("a", "categorical", vocab_size=4), Feature("b", "categorical", vocab_size=6)]
    nums = [Feature(f"n{i}", "numeric") for i in range(num_numeric)]
    return Schema(features=(*cats, *nums))


def _batch(num_numeric: int = 2) -> Batch:
    sparse = torch.tensor([[1, 5], [0, 2], [3, 0]])
    dense = torch.arange(3 * num_numeric, dtype=torch.float32).reshape(3, num_numeric)
    return Batch(dense=dense, sparse=sparse, labels={"click": torch.zeros(3)})


def test_flat_is_embedding_rows_then_numeric() -> None:
    enc = FeatureEncoder(_schema(), functools.partial(FullEmbedding, dim=3))
    b = _batch()
    w = enc.embedding.table.weight  # rows: field a = 0..3, field b = 4..9
    expected = torch.cat([w[b.sparse[:, 0]], w[4 + b.sparse[:, 1]], b.dense], dim=1)
    assert enc.flat_dim == 2 * 3 + 2
    torch.testing.assert_close(enc(b), expected)


def test_tokens_append_one_numeric_token_per_feature() -> None:
    enc = FeatureEncoder(_schema(), functools.partial(FullEmbedding, dim=3), numeric_tokens=True)
    b = _batch()
    emb, dense = enc.embed(b), enc.numeric(b)
    tokens = enc.tokens(emb, dense)
    assert tokens.shape == (3, enc.num_tokens, 3) == (3, 4, 3)
    torch.testing.assert_close(tokens[:, :2], emb)
    v = enc.numeric_embedding.weight  # [Dn, D]
    torch.testing.assert_close(tokens[:, 3], dense[:, 1:2] * v[1])


def test_tokens_without_numeric_features_are_the_embeddings() -> None:
    enc = FeatureEncoder(_schema(0), functools.partial(FullEmbedding, dim=3), numeric_tokens=True)
    b = _batch(0)
    assert enc.numeric_embedding is None
    torch.testing.assert_close(enc.tokens(enc.embed(b), enc.numeric(b)), enc.embed(b))


def test_numeric_embedding_scales_vectors() -> None:
    ne = NumericEmbedding(2, 4)
    x = torch.tensor([[2.0, -1.0]])
    torch.testing.assert_close(ne(x)[0], torch.stack([2 * ne.weight[0], -ne.weight[1]]))


def test_errors_speak() -> None:
    enc = FeatureEncoder(_schema(), functools.partial(FullEmbedding, dim=3))
    with pytest.raises(ValueError, match=r"Batch\.sparse has 1 columns"):
        enc(
            Batch(
                dense=torch.zeros(2, 2),
                sparse=torch.zeros(2, 1, dtype=torch.long),
                labels={"click": torch.zeros(2)},
            )
        )
    with pytest.raises(ValueError, match=r"Batch\.dense has 3 columns"):
        enc(
            Batch(
                dense=torch.zeros(2, 3),
                sparse=torch.zeros(2, 2, dtype=torch.long),
                labels={"click": torch.zeros(2)},
            )
        )
    with pytest.raises(RuntimeError, match="numeric_tokens=True"):
        enc.tokens(torch.zeros(2, 2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="same schema"):
        FeatureEncoder(_schema(), lambda s: FullEmbedding(_schema_one_field(), dim=3))


def _schema_one_field() -> Schema:
    return Schema(features=(Feature("a", "categorical", vocab_size=4),))


def test_uses_sparse_gradients() -> None:
    assert uses_sparse_gradients(FullEmbedding(_schema(), dim=2, sparse_grad=True))
    assert not uses_sparse_gradients(HashedEmbedding(_schema(), dim=2, sparse_grad=False))


def test_wide_flat_inputs_are_zero_padded_to_a_gemm_friendly_width() -> None:
    from recsys_lab.layers.features import ALIGN_FROM, FLAT_ALIGN, aligned_width

    assert aligned_width(429) == 432 and aligned_width(432) == 432  # Criteo: 26·16 + 13
    assert aligned_width(ALIGN_FROM - 1) == ALIGN_FROM - 1  # narrow inputs untouched
    cats = [Feature(f"c{i}", "categorical", vocab_size=5) for i in range(26)]
    nums = [Feature(f"n{i}", "numeric") for i in range(13)]
    enc = FeatureEncoder(Schema(features=(*cats, *nums)), functools.partial(FullEmbedding, dim=16))
    batch = Batch(
        dense=torch.randn(4, 13), sparse=torch.randint(0, 5, (4, 26)), labels={"click": torch.zeros(4)}
    )
    x = enc(batch)
    assert enc.flat_dim == 432 and enc.flat_dim % FLAT_ALIGN == 0 and x.shape == (4, 432)
    assert (x[:, 429:] == 0).all()
    torch.testing.assert_close(x[:, 416:429], batch.dense)  # real columns first, in order


def test_padding_columns_stay_zero_through_the_dcnv2_cross_network() -> None:
    from recsys_lab.layers.interactions import CrossNetwork

    torch.manual_seed(0)
    cross = CrossNetwork(432, num_layers=3)
    x0 = torch.randn(5, 432)
    x0[:, 429:] = 0
    assert (cross(x0)[:, 429:] == 0).all()


# -- multi-valued fields -------------------------------------------------------------------------


def _multi_schema() -> Schema:
    return Schema(
        features=(
            *_schema().features,
            Feature("tags", "multi_valued", vocab_size=5),
            Feature("genres", "multi_valued", vocab_size=3),
        )
    )


def _multi_batch() -> Batch:
    b = _batch()
    # [B=3, M=2, L=3], -1 = padding; row 2's tags are empty (the missing id 1).
    b.multi = torch.tensor([[[2, 3, 4], [2, -1, -1]], [[4, -1, -1], [0, 2, -1]], [[1, -1, -1], [1, -1, -1]]])
    return b


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_multi_valued_fields_are_pooled_after_the_categorical_fields(pooling) -> None:
    from recsys_lab.layers.features import MultiValuedEmbedding

    schema = _multi_schema()
    enc = FeatureEncoder(schema, functools.partial(FullEmbedding, dim=3))
    assert enc.num_fields == 4 and enc.flat_dim == 4 * 3 + 2
    b = _multi_batch()
    out = enc.embed(b)  # [B, 2 + 2, D]
    assert out.shape == (3, 4, 3)
    torch.testing.assert_close(out[:, :2], enc.embedding(b.sparse))
    w = enc.multi_valued.embedding.table.weight  # rows: tags 0..4, genres 5..7
    torch.testing.assert_close(out[0, 2], w[[2, 3, 4]].mean(0))
    torch.testing.assert_close(out[1, 3], w[[5 + 0, 5 + 2]].mean(0))
    torch.testing.assert_close(out[2, 2], w[1])
    summed = MultiValuedEmbedding(schema, functools.partial(FullEmbedding, dim=3), pooling=pooling)
    got = summed(b.multi)
    want = summed.embedding.table.weight[[2, 3, 4]]
    torch.testing.assert_close(got[0, 0], want.mean(0) if pooling == "mean" else want.sum(0))


def test_padding_does_not_change_the_pooled_vector_and_models_read_multi_valued_fields() -> None:
    from recsys_lab.models.dcnv2 import DCNv2
    from recsys_lab.models.deepfm import DeepFM
    from recsys_lab.models.dnn import DNN

    schema = _multi_schema()
    emb = functools.partial(FullEmbedding, dim=4)
    enc = FeatureEncoder(schema, emb)
    b = _multi_batch()
    wider = Batch(
        dense=b.dense,
        sparse=b.sparse,
        labels=b.labels,
        multi=torch.cat([b.multi, -torch.ones(3, 2, 4, dtype=torch.long)], 2),
    )
    torch.testing.assert_close(enc.embed(wider), enc.embed(b))
    for model in (
        DNN(schema, emb),
        DeepFM(schema, emb, first_order="tied"),
        DeepFM(schema, emb),
        DCNv2(schema, emb),
    ):
        out = model(b)
        assert out.shape == (3,)
        changed = Batch(dense=b.dense, sparse=b.sparse, labels=b.labels, multi=b.multi.flip(1).clamp(max=2))
        assert not torch.allclose(model(changed), out), type(model).__name__  # the field is read
    assert sum(p.numel() for p in DNN(schema, emb).embedding_parameters()) == (4 + 6 + 5 + 3) * 4
    with pytest.raises(ValueError, match=r"no Batch\.multi"):
        enc.embed(_batch())
