"""Multi-layer perceptron: the dense tower of every baseline, and small helpers for typed choices."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal, get_args

from torch import Tensor, nn

Activation = Literal["relu", "gelu", "silu", "tanh"]


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices`` (runtime check of a ``Literal``)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def activation_module(name: str) -> nn.Module:
    """A fresh activation module: relu, gelu, silu, tanh, or identity."""
    check_choice("activation", name, [*get_args(Activation), "identity"])
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "identity": nn.Identity}[
        name
    ]()


class MLP(nn.Module):
    """``Linear -> [BatchNorm] -> activation -> [Dropout]`` per hidden layer, then an optional
    plain ``Linear`` to ``out_dim`` (no activation: a head producing logits or a projection).

    Input ``[..., in_dim]`` -> output ``[..., out_features]``; leading dimensions are flattened
    for the layers (so batch norm also works on ``[B, T, in_dim]`` token inputs).

    Args:
        in_dim: width of the input.
        hidden_units: widths of the hidden layers; may be empty (then the MLP is the identity,
            or a single Linear when ``out_dim`` is given).
        out_dim: width of a final Linear without activation; None = end at the last hidden layer.
        activation: non-linearity after each hidden layer.
        dropout: dropout probability after each hidden layer's activation (0 = none).
        batch_norm: BatchNorm1d after each hidden Linear, before the activation.

    Attributes:
        out_features: width of the output.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_units: Sequence[int],
        out_dim: int | None = None,
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden_units]
        if in_dim < 1:
            raise ValueError(f"MLP in_dim must be >= 1, got {in_dim}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"MLP hidden_units must all be >= 1, got {hidden}")
        if out_dim is not None and out_dim < 1:
            raise ValueError(f"MLP out_dim must be >= 1 or None, got {out_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        check_choice("MLP activation", activation, get_args(Activation))

        layers: list[nn.Module] = []
        widths = [in_dim, *hidden]
        for a, b in itertools.pairwise(widths):
            layers.append(nn.Linear(a, b))
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation_module(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        if out_dim is not None:
            layers.append(nn.Linear(widths[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_features = out_dim if out_dim is not None else widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[..., in_dim]`` -> ``[..., out_features]``."""
        lead = x.shape[:-1]
        y = self.net(x.reshape(-1, self.in_dim))  # [N, in_dim] -> [N, out_features]
        return y.reshape(*lead, self.out_features)

    def flops_per_example(self) -> int:
        """Matmul FLOPs per input row: ``2 · in · out`` per Linear."""
        return sum(2 * m.in_features * m.out_features for m in self.net if isinstance(m, nn.Linear))
