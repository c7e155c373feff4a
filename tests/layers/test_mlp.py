import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.layers.mlp import MLP


def test_forward_equals_hand_computation() -> None:
    torch.manual_seed(0)
    mlp = MLP(5, [4], out_dim=2, activation="tanh")
    x = torch.randn(3, 5)
    l1, l2 = mlp.net[0], mlp.net[2]
    expected = torch.tanh(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    torch.testing.assert_close(mlp(x), expected)


@pytest.mark.parametrize(
    ("hidden", "out_dim", "out_features", "num_linear"),
    [([8, 4], None, 4, 2), ([8, 4], 1, 1, 3), ([], 2, 2, 1), ([], None, 6, 0)],
)
def test_out_features_and_layers(
    hidden: list[int], out_dim: int | None, out_features: int, num_linear: int
) -> None:
    mlp = MLP(6, hidden, out_dim=out_dim)
    assert mlp.out_features == out_features
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == num_linear
    assert mlp(torch.randn(2, 6)).shape == (2, out_features)


def test_empty_mlp_is_identity() -> None:
    x = torch.randn(3, 6)
    torch.testing.assert_close(MLP(6, [])(x), x)


def test_last_layer_has_no_activation_when_out_dim_given() -> None:
    mlp = MLP(3, [4], out_dim=2, activation="relu", dropout=0.1, batch_norm=True)
    kinds = [type(m).__name__ for m in mlp.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


@pytest.mark.parametrize("shape", [(7, 6), (3, 5, 6)])
@pytest.mark.parametrize("out_dim", [None, 3])
def test_flops_match_flop_counter(shape: tuple[int, ...], out_dim: int | None) -> None:
    mlp = MLP(6, [16, 8], out_dim=out_dim, batch_norm=True)
    x = torch.randn(*shape)
    with FlopCounterMode(display=False) as counter:
        mlp(x)
    rows = x.numel() // 6
    assert (
        mlp.flops_per_example()
        == counter.get_total_flops() / rows
        == 2 * (6 * 16 + 16 * 8 + 8 * (out_dim or 0))
    )


def test_batch_norm_over_token_inputs_equals_flattened() -> None:
    torch.manual_seed(0)
    mlp = MLP(4, [5], batch_norm=True, activation="gelu")
    x = torch.randn(3, 2, 4)  # [B, T, D]
    torch.testing.assert_close(mlp(x), mlp(x.reshape(6, 4)).reshape(3, 2, 5))


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_every_activation_builds(activation: str) -> None:
    assert MLP(3, [4], activation=activation)(torch.randn(2, 3)).shape == (2, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_units": [4, 0]}, "hidden_units"),
        ({"hidden_units": [4], "dropout": 1.0}, "dropout"),
        ({"hidden_units": [4], "activation": "sigmoid"}, "activation"),
        ({"hidden_units": [4], "out_dim": 0}, "out_dim"),
    ],
)
def test_bad_settings_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLP(3, **kwargs)


def test_misspelt_argument_raises_type_error() -> None:
    with pytest.raises(TypeError):
        MLP(3, [4], dropuot=0.1)  # type: ignore[call-arg]
