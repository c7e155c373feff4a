"""APG: the decomposed forward equals materialising W_i = U S_i V; merging the over-parameterised
factors leaves outputs unchanged; conditions; APG in DNN, DeepFM and DCNv2 by config."""

import functools

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.layers.apg import APGMLP, APGConfig, APGLinear, as_apg_config, merge_apg
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.mlp import MLP
from recsys_lab.models.dcnv2 import DCNv2
from recsys_lab.models.deepfm import DeepFM
from recsys_lab.models.dnn import DNN
from tests.models.conftest import assert_all_parameters_get_gradients, make_batch, make_schema


def _randomised(layer: APGLinear) -> APGLinear:
    """Make S_i clearly instance-specific (the hyper-network's last layer starts near zero)."""
    with torch.no_grad():
        layer.hyper[-1].weight.normal_()
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("overparam", [None, 7])
def test_decomposed_forward_equals_materialised_w(overparam: int | None) -> None:
    torch.manual_seed(0)
    layer = _randomised(APGLinear(6, 5, rank=3, cond_dim=4, hypernet_hidden=8, overparam=overparam))
    x, z = torch.randn(9, 6), torch.randn(9, 4)
    out = layer(x, z)
    torch.testing.assert_close(out, layer.forward_materialized(x, z), atol=1e-5, rtol=1e-5)
    # And by hand, one example at a time: h_i = x_i U S_i V + b.
    u, v = layer.factors()
    for i in range(9):
        w_i = u @ layer.generate(z[i : i + 1])[0] @ v  # [N, M]
        torch.testing.assert_close(out[i], x[i] @ w_i + layer.bias, atol=1e-5, rtol=1e-5)
    # Instance-specific: the same x under two conditions gives two outputs.
    assert not torch.allclose(layer(x[:1], z[:1]), layer(x[:1], z[1:2]))


def test_merged_and_unmerged_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    layer = _randomised(APGLinear(6, 5, rank=3, cond_dim=6, hypernet_hidden=8, overparam=16))
    x = torch.randn(9, 6)
    before = layer(x, x)
    n_before = sum(p.numel() for p in layer.parameters())
    merge_apg(layer)
    assert layer.merged and layer.u_l is None
    torch.testing.assert_close(layer(x, x), before, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in layer.parameters()) == n_before - (6 * 16 + 16 * 3 + 3 * 16 + 16 * 5) + (
        6 * 3 + 3 * 5
    )
    assert "u" in dict(layer.named_parameters()) and "u_l" not in layer.state_dict()


def test_flops_are_the_serving_cost() -> None:
    """Per-example matmul FLOPs (the slope over batch sizes; the factor products are per forward)."""
    torch.manual_seed(0)
    layer = APGLinear(6, 5, rank=3, cond_dim=6, hypernet_hidden=8, overparam=16)

    def flops(n: int) -> int:
        x = torch.randn(n, 6)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            layer(x, x)
        return counter.get_total_flops()

    expected = 2 * (6 * 8 + 8 * 9) + 2 * 6 * 3 + 2 * 3 * 3 + 2 * 3 * 5
    assert layer.flops_per_example() == expected
    assert (flops(20) - flops(10)) / 10 == expected
    merge_apg(layer)
    assert flops(10) == 10 * expected


@pytest.mark.parametrize("condition", ["self", "group", "mix"])
def test_apg_mlp_conditions(condition: str) -> None:
    torch.manual_seed(0)
    cfg = APGConfig(condition=condition, rank=2, overparam=None, hypernet_hidden=4)  # type: ignore[arg-type]
    mlp = APGMLP(5, [4, 3], 1, "tanh", 0.0, False, cfg, group_dim=0 if condition == "self" else 2)
    for layer in mlp.layers:
        _randomised(layer)
    x, g = torch.randn(6, 5), torch.randn(6, 2)
    out = mlp(x, g)
    assert out.shape == (6, 1)
    changed = mlp(x, g + 1.0)
    if condition == "self":
        torch.testing.assert_close(changed, out)  # the group is not read
    else:
        assert not torch.allclose(changed, out)  # the group conditions S_i
    expected_cond = {"self": 5, "group": 2, "mix": 7}[condition]
    assert mlp.layers[0].cond_dim == expected_cond


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"model.apg.condition must be one of"):
        APGConfig(condition="user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"needs model\.apg\.group_fields"):
        APGConfig(condition="group", group_fields=[])
    with pytest.raises(ValueError, match=r"unknown model.apg keys \['rnak'\]"):
        as_apg_config(OmegaConf.create({"rnak": 3}))
    cfg = as_apg_config(OmegaConf.create({"condition": "mix", "group_fields": ["c0"]}))
    assert cfg == APGConfig(condition="mix", group_fields=["c0"])


MODELS = [
    (DNN, {}),
    (DeepFM, {}),
    (DCNv2, {"num_cross_layers": 1}),
    (DCNv2, {"num_cross_layers": 1, "structure": "stacked"}),
]


@pytest.mark.parametrize(("cls", "kwargs"), MODELS, ids=["dnn", "deepfm", "dcnv2", "dcnv2_stacked"])
@pytest.mark.parametrize("condition", ["self", "group", "mix"])
def test_models_take_apg_by_config(cls, kwargs, condition: str) -> None:
    """model.apg (a plain mapping, as Hydra passes it) swaps the MLP for its APG twin; outputs are
    unchanged by merging; every parameter trains; the static twin is unchanged when apg is null."""
    schema, emb = make_schema(), functools.partial(FullEmbedding, dim=8, sparse_grad=False)
    apg = OmegaConf.create({"condition": condition, "rank": 4, "overparam": 8, "group_fields": ["c1"]})
    torch.manual_seed(0)
    model = cls(schema, emb, hidden_units=[8, 4], apg=apg, **kwargs).eval()
    assert isinstance(model.mlp, APGMLP)
    torch.manual_seed(0)
    static = cls(schema, emb, hidden_units=[8, 4], **kwargs)
    assert isinstance(static.mlp, MLP)
    batch = make_batch(16, seed=0)
    for layer in model.mlp.layers:
        _randomised(layer)
    with torch.no_grad():
        before = model(batch)
        merge_apg(model)
        torch.testing.assert_close(model(batch), before, atol=1e-5, rtol=1e-5)
    model = cls(schema, emb, hidden_units=[8, 4], apg=apg, **kwargs)
    assert_all_parameters_get_gradients(model, batch)


def test_group_condition_reads_the_named_field() -> None:
    schema, emb = make_schema(), functools.partial(FullEmbedding, dim=8, sparse_grad=False)
    torch.manual_seed(0)
    model = DNN(schema, emb, hidden_units=[8], apg={"condition": "group", "group_fields": ["c2"]}).eval()
    assert model.apg_fields == [2]
    with pytest.raises(ValueError, match=r"group_fields \['nope'\] are not categorical features"):
        DNN(schema, emb, apg={"condition": "group", "group_fields": ["nope"]})
    with pytest.raises(ValueError, match="needs an MLP to adapt"):
        DCNv2(schema, emb, structure="stacked", hidden_units=[], apg={"condition": "self"})
