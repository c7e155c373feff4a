import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.mixing import rankmixer_mix
from recsys_lab.models.rankmixer import RankMixer

SMALL = {"num_tokens": 4, "dim": 16, "ffn_hidden": 32}
GOLDEN = [0.0598452, 0.4063159, -0.1790699, -0.0866475]


def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """torch.manual_seed(0), RankMixer(**SMALL), conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = RankMixer(schema, embedding, **SMALL).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN), atol=1e-5, rtol=0)


def test_forward_equals_the_paper_block(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    """Post-norm: X <- Norm(X + Mix(X)); X <- Norm(X + PFFN(X)); mean over tokens; linear head."""
    torch.manual_seed(0)
    model = RankMixer(schema, embedding, num_layers=2, **SMALL).eval()
    net = model.net
    tokens = model.encoder.tokens(model.encoder.embed(batch), model.encoder.numeric(batch))
    x = net.tokenizer(tokens)
    for layer in range(2):
        x = net.wrappers[2 * layer].norm(x + rankmixer_mix(x))
        x = net.wrappers[2 * layer + 1].norm(x + net.ffns[layer](x))
    expected = net.head(x.mean(1)).squeeze(-1)
    torch.testing.assert_close(model(batch), expected)


@pytest.mark.parametrize("norm", ["post", "siamese"])
def test_flops_match_flop_counter(schema, embedding, batch, flops_of, norm: str) -> None:
    model = RankMixer(schema, embedding, norm=norm, **SMALL).eval()  # type: ignore[arg-type]
    n_in, t, d, h = 4 + 3, 4, 16, 32
    group = 2  # ceil(7 / 4) input tokens of width 8 per token
    expected = 2 * t * group * 8 * d + 2 * (3 * 2 * t * d * h) + 2 * d
    assert n_in == model.encoder.num_tokens
    assert model.flops_per_example() == flops_of(model, batch) == expected


def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients) -> None:
    check_gradients(RankMixer(schema, embedding, **SMALL), batch)


def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns) -> None:
    torch.manual_seed(0)
    learns(RankMixer(schema, embedding, **{**SMALL, "num_layers": 1, "dim": 8, "ffn_hidden": 16}))


def test_config(config_matches) -> None:
    config_matches(RankMixer, "rankmixer")


def test_bad_config_fails_clearly(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match=r"model.dim \(18\) must be divisible by model.num_tokens \(4\)"):
        RankMixer(schema, embedding, num_tokens=4, dim=18)
    with pytest.raises(ValueError, match=r"num_tokens must be in \[1, 7\]"):
        RankMixer(schema, embedding, num_tokens=8, dim=16)
    with pytest.raises(ValueError, match="num_layers >= 1"):
        RankMixer(schema, embedding, num_layers=0, **SMALL)
