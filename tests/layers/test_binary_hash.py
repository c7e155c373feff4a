"""BH: blocks are a bijection of the code's bits, per-block offsets, fusion, unseen ids embed."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.binary_hash import BinaryHashEmbedding, block_positions, splitmix64
from recsys_lab.models.dnn import DNN
from tests.helpers import tiny_batch, tiny_schema


def _schema() -> Schema:
    return Schema((Feature("a", "categorical", 1000), Feature("b", "categorical", 50)))


def _reassemble(emb: BinaryHashEmbedding, blocks: torch.Tensor) -> torch.Tensor:
    """Inverse of ``emb.blocks``: put every block bit back at its code position."""
    code = torch.zeros(blocks.shape[:-1], dtype=torch.long)
    for k in range(emb.num_blocks):
        for i in range(emb.block_bits):
            pos = int(block_positions(emb.code_bits, emb.block_bits, emb.strategy)[k, i])
            if pos >= 0:
                code |= ((blocks[..., k] >> i) & 1) << pos
    return code


@pytest.mark.parametrize("strategy", ["succession", "skip"])
@pytest.mark.parametrize(("code_bits", "block_bits"), [(64, 4), (64, 5), (20, 3), (13, 13)])
def test_blocks_are_a_bijection_of_the_code_bits(strategy, code_bits, block_bits):
    pos = block_positions(code_bits, block_bits, strategy)
    used = pos[pos >= 0]
    assert sorted(used.tolist()) == list(range(code_bits))  # every bit in exactly one block
    emb = BinaryHashEmbedding(_schema(), dim=4, block_bits=block_bits, code_bits=code_bits, strategy=strategy)
    codes = emb.codes(torch.randint(0, 10**6, (300, 2)))
    blocks = emb.blocks(codes)
    assert blocks.shape == (300, 2, emb.num_blocks)
    assert int(blocks.min()) >= 0 and int(blocks.max()) < 2**block_bits
    assert torch.equal(_reassemble(emb, blocks), codes)


def test_skip_interleaves_and_succession_is_consecutive():
    assert block_positions(8, 4, "succession").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert block_positions(8, 4, "skip").tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_hash_is_injective_on_ids_and_fields():
    x = torch.arange(200_000)
    assert splitmix64(x).unique().numel() == x.numel()
    emb = BinaryHashEmbedding(_schema(), dim=4)
    ids = torch.arange(5000).repeat(2, 1).T  # same id in both fields
    codes = emb.codes(ids)
    assert codes.unique().numel() == 10_000  # fields hash apart


@pytest.mark.parametrize("fusion", ["sum", "mean", "concat"])
def test_ids_differing_in_one_block_embed_differently(fusion):
    emb = BinaryHashEmbedding(_schema(), dim=16, block_bits=4, code_bits=16, fusion=fusion)
    nn_init = torch.Generator().manual_seed(0)
    emb.table.weight.data = torch.randn(emb.table.weight.shape, generator=nn_init)
    base = torch.tensor([[0x1234, 0x0ABC]])
    for k in range(emb.num_blocks):
        other = base ^ (0x5 << (4 * k))  # change block k only
        assert (emb.blocks(other) != emb.blocks(base)).sum(-1).tolist() == [[1, 1]]
        assert not torch.allclose(emb.embed_codes(base), emb.embed_codes(other))


def test_per_block_offsets_separate_permuted_blocks():
    emb = BinaryHashEmbedding(_schema(), dim=8, block_bits=4, code_bits=8, fusion="sum")
    emb.table.weight.data = torch.randn(emb.table.weight.shape)
    a, b = torch.tensor([[0x21, 0x21]]), torch.tensor([[0x12, 0x12]])  # blocks (1, 2) vs (2, 1)
    assert sorted(emb.blocks(a)[0, 0].tolist()) == sorted(emb.blocks(b)[0, 0].tolist())
    assert not torch.allclose(emb.embed_codes(a), emb.embed_codes(b))


def test_table_size_shapes_and_unseen_ids():
    emb = BinaryHashEmbedding(_schema(), dim=16, block_bits=5, code_bits=64, fusion="sum")
    assert emb.table.weight.shape == (13 * 32, 16)
    assert emb.table_ratio(_schema()) == pytest.approx(1050 / (13 * 32))
    out = emb(torch.tensor([[3, 7], [10**9, 10**6]]))  # ids far beyond the vocabulary still embed
    assert out.shape == (2, 2, 16) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    concat = BinaryHashEmbedding(_schema(), dim=16, block_bits=16, code_bits=64, fusion="concat")
    assert concat.table.weight.shape == (4 * 2**16, 4) and concat(torch.tensor([[1, 2]])).shape == (1, 2, 16)
    with pytest.raises(ValueError, match="divisible"):
        BinaryHashEmbedding(_schema(), dim=10, block_bits=4, fusion="concat")
    with pytest.raises(ValueError, match="strategy"):
        BinaryHashEmbedding(_schema(), strategy="zigzag")  # type: ignore[arg-type]


def test_any_model_trains_with_bh_sparse_gradients():
    model = DNN(
        tiny_schema(), embedding=lambda s: BinaryHashEmbedding(s, dim=8, block_bits=3), hidden_units=[8]
    )
    assert model.embedding_parameters() == [model.encoder.embedding.table.weight]
    batch = tiny_batch()
    model(batch).sum().backward()
    assert model.encoder.embedding.table.weight.grad.is_sparse
