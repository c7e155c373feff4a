import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.mixing import rankmixer_permutation
from recsys_lab.models.rankmixer import RankMixer
from recsys_lab.models.unimixer import UniMixer

SMALL = {"num_tokens": 4, "dim": 16, "ffn_hidden": 32, "block_size": 4}
GOLDEN = [-0.085271, 0.819277, 0.7801678, -1.8920631]


def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """torch.manual_seed(0), UniMixer(**SMALL), conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = UniMixer(schema, embedding, **SMALL).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["post", "siamese"])
def test_with_rankmixer_permutation_equals_rankmixer(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch, norm: str
) -> None:
    """A UniMixer whose G is pinned to RankMixer's permutation and W_i to I (block size D/T),
    with a RankMixer's other weights, computes that RankMixer."""
    torch.manual_seed(0)
    kwargs = {"num_tokens": 4, "dim": 16, "ffn_hidden": 32, "num_layers": 2, "norm": norm}
    rank = RankMixer(schema, embedding, **kwargs).eval()  # type: ignore[arg-type]
    uni = UniMixer(schema, embedding, block_size=16 // 4, **kwargs).eval()  # type: ignore[arg-type]
    missing, unexpected = uni.load_state_dict(rank.state_dict(), strict=False)
    assert not unexpected and all("logits" in k or "temperature" in k for k in missing)
    with torch.no_grad():
        for mixer in uni.net.mixers:
            mixer.global_logits.copy_(rankmixer_permutation(4))
            mixer.local_logits.copy_(torch.eye(4).expand_as(mixer.local_logits))
            mixer.set_temperature(0.05)  # logits/τ = 20: Sinkhorn returns the permutation to ~1e-9
    torch.testing.assert_close(uni(batch), rank(batch), atol=1e-5, rtol=1e-5)
    assert uni.flops_per_example() > rank.flops_per_example()  # the general mixer costs FLOPs


def test_block_size_need_not_match_the_tokens(schema: Schema, embedding: EmbeddingFactory, batch) -> None:
    for block in (2, 8, 64):  # N = 32, 8, 1 blocks for T = 4 tokens
        assert UniMixer(schema, embedding, num_tokens=4, dim=16, block_size=block)(batch).shape == (16,)
    assert UniMixer(schema, embedding, num_tokens=3, dim=10, block_size=6)(batch).shape == (16,)


def test_flops_match_flop_counter(schema, embedding, batch, flops_of) -> None:
    model = UniMixer(schema, embedding, **SMALL).eval()
    t, d, h, b = 4, 16, 32, 4
    n = t * d // b
    per_layer = (2 * n * b * b + 2 * n * n * b) + 3 * 2 * t * d * h
    expected = 2 * t * 2 * 8 * d + 2 * per_layer + 2 * d
    assert model.flops_per_example() == flops_of(model, batch) == expected


def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients) -> None:
    check_gradients(UniMixer(schema, embedding, **SMALL), batch)


def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns) -> None:
    torch.manual_seed(0)
    learns(UniMixer(schema, embedding, **{**SMALL, "num_layers": 1, "dim": 8, "ffn_hidden": 16}))


def test_config(config_matches) -> None:
    config_matches(UniMixer, "unimixer")


def test_bad_config_fails_clearly(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match=r"block_size must divide T·D = 4·16 = 64, got 6"):
        UniMixer(schema, embedding, num_tokens=4, dim=16, block_size=6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        UniMixer(schema, embedding, temperature=0.0, **SMALL)
