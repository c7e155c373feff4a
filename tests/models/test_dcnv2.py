import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.models.dcnv2 import DCNv2
from recsys_lab.models.dnn import DNN

CONFIGS = {
    "parallel": {},
    "stacked": {"structure": "stacked"},
    "low_rank_moe": {"low_rank": 4, "num_experts": 3},
}
GOLDEN = {
    "parallel": [0.2218356, 0.3683461, 0.0339469, -0.0096534],
    "stacked": [0.0813771, 0.1129493, 0.07079, 0.0760962],
    "low_rank_moe": [0.0502017, -0.0619493, -0.1393601, -0.0613095],
}
D = 4 * 8 + 3  # cross input width of the conftest schema: F·D + Dn


@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden_logits(schema: Schema, embedding: EmbeddingFactory, batch: Batch, name: str) -> None:
    """torch.manual_seed(0), DCNv2 defaults plus CONFIGS[name], conftest's batch (seed 0), eval mode."""
    torch.manual_seed(0)
    model = DCNv2(schema, embedding, **CONFIGS[name]).eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (16,)
    torch.testing.assert_close(logits[:4], torch.tensor(GOLDEN[name]), atol=1e-5, rtol=0)


def test_parallel_forward_equals_formula(schema: Schema, embedding: EmbeddingFactory, batch: Batch) -> None:
    torch.manual_seed(0)
    model = DCNv2(schema, embedding, num_cross_layers=2, hidden_units=[4]).eval()
    with torch.no_grad():
        for layer in model.cross.layers:
            layer.linear.bias.normal_()
    x0 = model.encoder(batch)
    x = x0
    for layer in model.cross.layers:
        x = x0 * (x @ layer.linear.weight.T + layer.linear.bias) + x  # x_{l+1} = x_0 ⊙ (W x_l + b) + x_l
    h = torch.cat([x, model.mlp(x0)], dim=1)
    torch.testing.assert_close(model(batch), (h @ model.head.weight.T + model.head.bias).squeeze(-1))


def test_stacked_without_cross_layers_is_a_dnn(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch
) -> None:
    """DCNv2(stacked, 0 cross layers) with a DNN's weights computes that DNN."""
    torch.manual_seed(0)
    dnn = DNN(schema, embedding, hidden_units=[16, 8]).eval()
    dcn = DCNv2(schema, embedding, num_cross_layers=0, structure="stacked", hidden_units=[16, 8]).eval()
    state = dnn.state_dict()
    state["head.weight"], state["head.bias"] = state.pop("mlp.net.4.weight"), state.pop("mlp.net.4.bias")
    dcn.load_state_dict(state)
    torch.testing.assert_close(dcn(batch), dnn(batch))
    assert dcn.flops_per_example() == dnn.flops_per_example()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 3 * 2 * D * D + 2 * (D * 256 + 256 * 128) + 2 * (D + 128)),
        ({"structure": "stacked"}, 3 * 2 * D * D + 2 * (D * 256 + 256 * 128) + 2 * 128),
        (
            {"low_rank": 4, "num_experts": 3},
            3 * (3 * (2 * D * 4 + 2 * 4 * 4 + 2 * 4 * D) + 2 * D * 3)
            + 2 * (D * 256 + 256 * 128)
            + 2 * (D + 128),
        ),
        (
            {"structure": "stacked", "low_rank": 2, "hidden_units": []},
            3 * (2 * D * 2 + 2 * 2 * 2 + 2 * 2 * D) + 2 * D,
        ),
        ({"num_cross_layers": 0, "hidden_units": [8], "batch_norm": True}, 2 * D * 8 + 2 * (D + 8)),
    ],
)
def test_flops_match_flop_counter(
    schema: Schema, embedding: EmbeddingFactory, batch: Batch, flops_of, kwargs: dict, expected: int
) -> None:
    model = DCNv2(schema, embedding, **kwargs).eval()
    assert model.flops_per_example() == flops_of(model, batch) == expected


def test_param_counts(schema: Schema, embedding: EmbeddingFactory) -> None:
    model = DCNv2(schema, embedding, num_cross_layers=2, hidden_units=[4])
    assert model.num_params(embedding=True, dense=False) == (5 + 10 + 20 + 50) * 8
    dense = 2 * (D * D + D) + (D * 4 + 4) + (D + 4 + 1)  # cross, MLP, head
    assert model.num_params(embedding=False, dense=True) == dense
    moe = DCNv2(schema, embedding, num_cross_layers=1, low_rank=2, num_experts=3, hidden_units=[4])
    moe_cross = 3 * (D * 2 + 2 * 2 + 2 * D) + D + D * 3  # V, C, U per expert; bias; gate
    assert moe.num_params(embedding=False, dense=True) == moe_cross + (D * 4 + 4) + (D + 4 + 1)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradients_reach_every_parameter(schema, embedding, batch, check_gradients, name) -> None:
    check_gradients(DCNv2(schema, embedding, hidden_units=[8], **CONFIGS[name]), batch)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_learns_planted_task(schema: Schema, embedding: EmbeddingFactory, learns, name: str) -> None:
    torch.manual_seed(0)
    learns(DCNv2(schema, embedding, hidden_units=[32, 16], **CONFIGS[name]))


def test_config(config_matches) -> None:
    config_matches(DCNv2, "dcnv2")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_cross_layers": -1}, "num_cross_layers must be >= 0"),
        ({"low_rank": D}, r"low_rank must be in \[1, 34\]"),
        ({"num_experts": 4}, "set low_rank"),
        ({"structure": "serial"}, "structure"),
        ({"hidden_units": []}, "structure=stacked with hidden_units=\\[\\]"),
        ({"structure": "stacked", "num_cross_layers": 0, "hidden_units": []}, "linear model"),
    ],
)
def test_bad_settings_raise(schema: Schema, embedding: EmbeddingFactory, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DCNv2(schema, embedding, **kwargs)


def test_misspelt_argument_raises_type_error(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(TypeError):
        DCNv2(schema, embedding, num_cross_layer=2)  # type: ignore[call-arg]
