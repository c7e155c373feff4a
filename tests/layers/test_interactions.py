import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.interactions import (
    CrossLayer,
    CrossNetwork,
    FirstOrder,
    FMInteraction,
    MixtureCrossLayer,
)


def _schema(num_numeric: int = 2) -> Schema:
    cats = [Feature("a", "categorical", vocab_size=4), Feature("b", "categorical", vocab_size=6)]
    nums = [Feature(f"n{i}", "numeric") for i in range(num_numeric)]
    return Schema(features=(*cats, *nums))


def _flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


# -- FM ------------------------------------------------------------------------------------------
def test_fm_equals_brute_force_pairwise_sum() -> None:
    torch.manual_seed(0)
    v = torch.randn(5, 6, 4, dtype=torch.float64)  # [B, N, D]
    expected = sum((v[:, i] * v[:, j]).sum(-1) for i, j in itertools.combinations(range(6), 2))
    torch.testing.assert_close(FMInteraction()(v), expected)


def test_fm_is_invariant_to_token_order_and_zero_for_one_token() -> None:
    v = torch.randn(3, 5, 4)
    fm = FMInteraction()
    torch.testing.assert_close(fm(v), fm(v[:, torch.randperm(5)]))
    torch.testing.assert_close(fm(v[:, :1]), torch.zeros(3))


# -- first order ---------------------------------------------------------------------------------
def test_first_order_table_equals_hand_computation() -> None:
    torch.manual_seed(0)
    lr = FirstOrder(_schema(), "table", sparse_grad=False)
    torch.nn.init.normal_(lr.numeric.weight)
    torch.nn.init.normal_(lr.bias)
    ids = torch.tensor([[0, 5], [3, 1]])
    dense = torch.randn(2, 2)
    w = lr.table.table.weight[:, 0]  # rows: field a = 0..3, field b = 4..9
    expected = w[ids[:, 0]] + w[4 + ids[:, 1]] + dense @ lr.numeric.weight[0] + lr.bias
    torch.testing.assert_close(lr(ids, dense, torch.empty(0)), expected)
    assert lr.flops_per_example() == _flops(lr, ids, dense, torch.empty(0)) / 2 == 2 * 2


def test_first_order_tied_equals_dot_with_field_vectors() -> None:
    torch.manual_seed(0)
    lr = FirstOrder(_schema(num_numeric=0), "tied", dim=3)
    torch.nn.init.normal_(lr.field_vectors)
    emb = torch.randn(4, 2, 3)  # [B, F, D]
    expected = (emb[:, 0] @ lr.field_vectors[0]) + (emb[:, 1] @ lr.field_vectors[1])
    torch.testing.assert_close(lr(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 0), emb), expected)
    assert lr.flops_per_example() == 0
    assert lr.numeric is None


def test_first_order_table_follows_sparse_flag() -> None:
    assert FirstOrder(_schema(), "table", sparse_grad=True).table.table.sparse
    assert not FirstOrder(_schema(), "table", sparse_grad=False).table.table.sparse
    with pytest.raises(ValueError, match="first-order weights"):
        FirstOrder(_schema(), "full")  # type: ignore[arg-type]


# -- cross layers --------------------------------------------------------------------------------
def test_cross_layer_equals_formula() -> None:
    torch.manual_seed(0)
    layer = CrossLayer(5)
    torch.nn.init.normal_(layer.linear.bias)
    x0, x = torch.randn(3, 5), torch.randn(3, 5)
    w, b = layer.linear.weight, layer.linear.bias
    expected = x0 * (x @ w.T + b) + x  # x_{l+1} = x_0 ⊙ (W x_l + b) + x_l, row-vector form
    torch.testing.assert_close(layer(x0, x), expected)


def test_cross_network_iterates_layers_on_x0() -> None:
    torch.manual_seed(0)
    net = CrossNetwork(4, num_layers=2)
    x0 = torch.randn(3, 4)
    x1 = net.layers[0](x0, x0)
    torch.testing.assert_close(net(x0), net.layers[1](x0, x1))
    torch.testing.assert_close(CrossNetwork(4, num_layers=0)(x0), x0)


def test_mixture_cross_one_expert_equals_formula() -> None:
    torch.manual_seed(0)
    layer = MixtureCrossLayer(6, low_rank=2, num_experts=1, activation="tanh")
    torch.nn.init.normal_(layer.bias)
    x0, x = torch.randn(4, 6), torch.randn(4, 6)
    v, c_t, u_t = layer.v[0], layer.c[0], layer.u[0]  # V [d, r], Cᵀ [r, r], Uᵀ [r, d]
    col = x.T  # column vectors [d, B]
    e = x0.T * (u_t.T @ torch.tanh(c_t.T @ torch.tanh(v.T @ col)) + layer.bias[:, None]) + col
    torch.testing.assert_close(layer(x0, x), e.T)
    assert layer.gate is None


def test_mixture_cross_linear_one_expert_equals_full_rank_with_w_equal_u_vt() -> None:
    """With g = identity and C = I the low-rank layer is the full-rank layer with W = U Vᵀ."""
    torch.manual_seed(0)
    low = MixtureCrossLayer(6, low_rank=3, num_experts=1, activation="identity")
    torch.nn.init.normal_(low.bias)
    with torch.no_grad():
        low.c.copy_(torch.eye(3)[None])
    full = CrossLayer(6)
    with torch.no_grad():
        full.linear.weight.copy_((low.v[0] @ low.u[0]).T)
        full.linear.bias.copy_(low.bias)
    x0, x = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(low(x0, x), full(x0, x))


def test_mixture_cross_equals_gated_sum_of_experts() -> None:
    torch.manual_seed(0)
    layer = MixtureCrossLayer(5, low_rank=2, num_experts=3, activation="relu")
    torch.nn.init.normal_(layer.bias)
    x0, x = torch.randn(4, 5), torch.randn(4, 5)
    gate = torch.softmax(x @ layer.gate.weight.T, dim=-1)  # [B, K]
    expected = x.clone()
    for k in range(3):
        h = torch.relu(torch.relu(x @ layer.v[k]) @ layer.c[k])
        expert = x0 * (h @ layer.u[k] + layer.bias)  # E_k(x_l)
        expected = expected + gate[:, k : k + 1] * expert
    torch.testing.assert_close(layer(x0, x), expected)


@pytest.mark.parametrize(
    ("low_rank", "num_experts", "expected"),
    [
        (None, 1, 3 * 2 * 10 * 10),
        (4, 1, 3 * (2 * 10 * 4 + 2 * 4 * 4 + 2 * 4 * 10)),
        (4, 3, 3 * (3 * (2 * 10 * 4 + 2 * 4 * 4 + 2 * 4 * 10) + 2 * 10 * 3)),
    ],
)
def test_cross_network_flops_match_flop_counter(
    low_rank: int | None, num_experts: int, expected: int
) -> None:
    net = CrossNetwork(10, num_layers=3, low_rank=low_rank, num_experts=num_experts)
    b = 7
    assert net.flops_per_example() == _flops(net, torch.randn(b, 10)) / b == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": -1}, "num_cross_layers must be >= 0"),
        ({"num_layers": 2, "low_rank": 8}, "low_rank must be in"),
        ({"num_layers": 2, "low_rank": 0}, "low_rank must be in"),
        ({"num_layers": 2, "num_experts": 2}, "needs the low-rank cross"),
        ({"num_layers": 2, "low_rank": 2, "num_experts": 0}, "num_experts must be >= 1"),
        ({"num_layers": 2, "low_rank": 2, "expert_activation": "gelu"}, "expert activation"),
    ],
)
def test_cross_network_bad_settings_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CrossNetwork(8, **kwargs)
