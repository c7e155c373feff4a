"""Shared layers of multi-task models: experts, softmax gates, MMoE and PLE extraction layers,
per-label towers, and the logit of a product of probabilities (ESMM's funnel).

B = batch size, I = input width, K = experts, H = expert output width, T = tasks (labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.layers.mlp import MLP, Activation


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate at both ends (Mächler's switch at ``-ln 2``)."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def product_logit(a: Tensor, b: Tensor) -> Tensor:
    """The logit of ``σ(a)·σ(b)``: ESMM's pCTCVR = pCTR·pCVR from the two towers' logits.

    ``log p = logσ(a) + logσ(b)`` and ``logit p = log p − log(1 − p)``, computed in log space
    so neither a tiny nor a near-one product loses precision. Shapes broadcast (``[B]`` -> ``[B]``).
    """
    log_p = nn.functional.logsigmoid(a) + nn.functional.logsigmoid(b)
    log_p = log_p.clamp(max=-1e-7)  # p < 1 strictly
    return log_p - log1mexp(log_p)


class Experts(nn.Module):
    """K independent MLP experts on the same input: ``[B, I]`` -> ``[B, K, H]``.

    Args:
        in_dim: I.
        num_experts: K.
        hidden_units: each expert's layers (H = the last width).
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        in_dim: int,
        num_experts: int,
        hidden_units: Sequence[int],
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_experts < 1 or not hidden_units:
            raise ValueError(
                f"Experts need num_experts >= 1 and at least one hidden layer, got {num_experts} and {list(hidden_units)}"
            )
        self.experts = nn.ModuleList(
            MLP(in_dim, hidden_units, None, activation, dropout, batch_norm) for _ in range(num_experts)
        )
        self.out_dim = int(hidden_units[-1])

    def __len__(self) -> int:
        return len(self.experts)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, I]`` -> ``[B, K, H]``."""
        return torch.stack([e(x) for e in self.experts], dim=1)

    def flops_per_example(self) -> int:
        return sum(e.flops_per_example() for e in self.experts)


class Gate(nn.Module):
    """A softmax gate over K experts: ``w = softmax(W x)``, ``[B, I]`` -> weights ``[B, K]`` (rows sum
    to 1); :meth:`mix` returns ``Σ_k w_k e_k`` ``[B, H]`` for expert outputs ``[B, K, H]``.

    Args:
        in_dim: I.
        num_experts: K.
    """

    def __init__(self, in_dim: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_experts)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, I]`` -> ``[B, K]``."""
        return torch.softmax(self.linear(x), dim=-1)

    def mix(self, x: Tensor, experts: Tensor) -> Tensor:
        """``x`` ``[B, I]`` and ``experts`` ``[B, K, H]`` -> ``[B, H]``."""
        return (self(x).unsqueeze(-1) * experts).sum(1)

    def flops_per_example(self) -> int:
        return 2 * self.linear.in_features * self.linear.out_features


class MixtureOfExperts(nn.Module):
    """MMoE's layer (Ma et al., KDD 2018): K shared experts, one gate per task.

    ``[B, I]`` -> T outputs ``[B, H]``, output t = ``Σ_k g_t(x)_k · e_k(x)``.

    Args:
        in_dim: I. num_experts: K. num_tasks: T. hidden_units: each expert's layers.
        activation, dropout, batch_norm: of the experts.
    """

    def __init__(
        self,
        in_dim: int,
        num_experts: int,
        num_tasks: int,
        hidden_units: Sequence[int],
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.experts = Experts(in_dim, num_experts, hidden_units, activation, dropout, batch_norm)
        self.gates = nn.ModuleList(Gate(in_dim, num_experts) for _ in range(num_tasks))
        self.out_dim = self.experts.out_dim

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``[B, I]`` -> T tensors ``[B, H]``."""
        e = self.experts(x)  # [B, K, H]
        return [g.mix(x, e) for g in self.gates]

    def flops_per_example(self) -> int:
        return self.experts.flops_per_example() + sum(g.flops_per_example() for g in self.gates)


class ExtractionLayer(nn.Module):
    """One PLE extraction layer (customised gate control; Tang et al., RecSys 2020).

    Each task t has its own experts and a gate over [its experts, the shared experts] fed by the
    task's input; the shared experts' output for the next layer mixes every expert with a gate on
    the shared input (left out in the last layer, ``shared_output=False``).

    ``T`` task inputs ``[B, I]`` and a shared input ``[B, I]`` -> ``T`` outputs ``[B, H]`` and a
    shared output ``[B, H]`` (or None).

    Args:
        in_dim: I. num_tasks: T. num_task_experts: experts per task. num_shared_experts: shared
        experts. hidden_units: each expert's layers. shared_output: build the shared gate.
        activation, dropout, batch_norm: of the experts.
    """

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        num_task_experts: int,
        num_shared_experts: int,
        hidden_units: Sequence[int],
        shared_output: bool = True,
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.task_experts = nn.ModuleList(
            Experts(in_dim, num_task_experts, hidden_units, activation, dropout, batch_norm)
            for _ in range(num_tasks)
        )
        self.shared_experts = Experts(
            in_dim, num_shared_experts, hidden_units, activation, dropout, batch_norm
        )
        self.task_gates = nn.ModuleList(
            Gate(in_dim, num_task_experts + num_shared_experts) for _ in range(num_tasks)
        )
        self.shared_gate = (
            Gate(in_dim, num_tasks * num_task_experts + num_shared_experts) if shared_output else None
        )
        self.out_dim = self.shared_experts.out_dim

    def forward(
        self, task_inputs: Sequence[Tensor], shared_input: Tensor
    ) -> tuple[list[Tensor], Tensor | None]:
        shared = self.shared_experts(shared_input)  # [B, Ks, H]
        own = [experts(x) for experts, x in zip(self.task_experts, task_inputs)]  # T x [B, Kt, H]
        outputs = [
            gate.mix(x, torch.cat([e, shared], dim=1))
            for gate, x, e in zip(self.task_gates, task_inputs, own)
        ]
        if self.shared_gate is None:
            return outputs, None
        every = torch.cat([*own, shared], dim=1)  # [B, T·Kt + Ks, H]
        return outputs, self.shared_gate.mix(shared_input, every)

    def flops_per_example(self) -> int:
        flops = (
            sum(e.flops_per_example() for e in self.task_experts) + self.shared_experts.flops_per_example()
        )
        flops += sum(g.flops_per_example() for g in self.task_gates)
        return flops + (self.shared_gate.flops_per_example() if self.shared_gate is not None else 0)


class Towers(nn.Module):
    """One MLP tower per label, each ending in a logit: T inputs ``[B, I]`` -> label -> logits ``[B]``.

    Args:
        in_dim: I. labels: the labels (one tower each). hidden_units: each tower's hidden layers.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        in_dim: int,
        labels: Sequence[str],
        hidden_units: Sequence[int],
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.towers = nn.ModuleList(
            MLP(in_dim, hidden_units, 1, activation, dropout, batch_norm) for _ in self.labels
        )

    def forward(self, inputs: Sequence[Tensor]) -> dict[str, Tensor]:
        if len(inputs) != len(self.labels):
            raise ValueError(f"Towers got {len(inputs)} inputs for {len(self.labels)} labels")
        return {label: t(x).squeeze(-1) for label, t, x in zip(self.labels, self.towers, inputs)}

    def flops_per_example(self) -> int:
        return sum(t.flops_per_example() for t in self.towers)
