import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.models.fm_block import FMBlock

SMALL = {"num_tokens": 4, "dim": 16, "ffn_hidden": 32, "compressed": 3}
GOLDEN = [-0.3119054, 0.1319391, -0.2026825, -0.36444]


def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """torch.manual_seed(0), FMBlock(**SMALL), conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = FMBlock(schema, embedding, **SMALL).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN), atol=1e-5, rtol=0)


def test_mixer_reads_pairwise_token_products(schema: Schema, embedding: EmbeddingFactory) -> None:
    """The FM mixer is quadratic in the tokens: scaling X by s scales X Xᵀ Y by s² (before its norm)."""
    torch.manual_seed(0)
    mixer = FMBlock(schema, embedding, **SMALL).net.mixers[0]
    x = torch.randn(2, 4, 16)
    xty = torch.einsum("btd,tk->bdk", x, mixer.y)
    inter = torch.einsum("btd,bdk->btk", 3 * x, torch.einsum("btd,tk->bdk", 3 * x, mixer.y))
    torch.testing.assert_close(inter, 9 * torch.einsum("btd,bdk->btk", x, xty), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(mixer(3 * x), mixer(x), atol=1e-4, rtol=1e-4)  # RMSNorm removes the scale


def test_flops_match_flop_counter(schema, embedding, batch, flops_of) -> None:
    model = FMBlock(schema, embedding, **SMALL).eval()
    t, d, h, k = 4, 16, 32, 3
    per_layer = (2 * t * d * k * 2 + 2 * t * k * t * d) + 3 * 2 * t * d * h
    expected = 2 * t * 2 * 8 * d + 2 * per_layer + 2 * d
    assert model.flops_per_example() == flops_of(model, batch) == expected


def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients) -> None:
    check_gradients(FMBlock(schema, embedding, **SMALL), batch)


def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns) -> None:
    torch.manual_seed(0)
    learns(FMBlock(schema, embedding, **{**SMALL, "num_layers": 1, "dim": 8, "ffn_hidden": 16}))


def test_config(config_matches) -> None:
    config_matches(FMBlock, "fm_block")


def test_bad_config_fails_clearly(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match="compressed width must be >= 1"):
        FMBlock(schema, embedding, **{**SMALL, "compressed": 0})
