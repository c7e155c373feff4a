import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.models.unimixer import UniMixer
from recsys_lab.models.unimixer_lite import UniMixerLite
from tests.models.conftest import make_batch

SMALL = {"num_tokens": 4, "dim": 16, "ffn_hidden": 32, "block_size": 4, "rank": 2, "num_basis": 3}
GOLDEN = [0.5099325, 0.4756077, -0.2799473, 0.1491871]


def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """torch.manual_seed(0), UniMixerLite(**SMALL), conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = UniMixerLite(schema, embedding, **SMALL).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN), atol=1e-5, rtol=0)


def test_fewer_mixing_parameters_than_unimixer(schema: Schema, embedding: EmbeddingFactory) -> None:
    """Same tokens, FFNs and FLOPs as UniMixer; the mixing costs 2·N·r + N·nb + nb·b² instead of N² + N·b²."""
    lite = UniMixerLite(schema, embedding, **SMALL)
    full = UniMixer(schema, embedding, **{k: v for k, v in SMALL.items() if k not in ("rank", "num_basis")})
    n, b, r, nb = 16, 4, 2, 3
    diff = full.num_params(embedding=False) - lite.num_params(embedding=False)
    assert diff == 2 * ((n * n + n * b * b) - (2 * n * r + n * nb + nb * b * b))
    assert lite.flops_per_example() == full.flops_per_example()


def test_flops_match_flop_counter(schema, embedding) -> None:
    """Per-example FLOPs are the slope over batch sizes (G and W_i are built once per forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = UniMixerLite(schema, embedding, **SMALL).eval()

    def flops(n: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(make_batch(n, seed=0))
        return counter.get_total_flops()

    assert (flops(32) - flops(16)) / 16 == model.flops_per_example()


def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients) -> None:
    check_gradients(UniMixerLite(schema, embedding, **SMALL), batch)


def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns) -> None:
    torch.manual_seed(0)
    learns(UniMixerLite(schema, embedding, **{**SMALL, "num_layers": 1, "dim": 8, "ffn_hidden": 16}))


def test_config(config_matches) -> None:
    config_matches(UniMixerLite, "unimixer_lite")


def test_bad_config_fails_clearly(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match=r"rank must be in \[1, 16\]"):
        UniMixerLite(schema, embedding, **{**SMALL, "rank": 17})
    with pytest.raises(ValueError, match="num_basis must be >= 1"):
        UniMixerLite(schema, embedding, **{**SMALL, "num_basis": 0})
