"""Feature interactions: the first-order (LR) term, the FM pairwise term, and DCNv2 cross layers.

B = batch size, F = categorical fields, Dn = numeric features, D = embedding width,
d = width of a cross network's input, K = experts, r = low rank.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.mlp import activation_module, check_choice

FirstOrderWeights = Literal["table", "tied"]
ExpertActivation = Literal["tanh", "relu", "identity"]


class FirstOrder(nn.Module):
    """The LR term ``b + Σ_f w_f(id_f) + Σ_j u_j x_j`` -> ``[B]``.

    Args:
        schema: the dataset schema.
        weights: where the per-id weights ``w_f(id)`` come from.
            ``"table"``: one learned scalar per (field, id), a width-1 :class:`FullEmbedding`
            (counted as embedding parameters). It is always a full table, whatever embedding the
            model uses. ``"tied"``: ``w_f(id) = ⟨a_f, e_f(id)⟩`` with one learned vector ``a_f``
            per field and the model's own field embeddings, so no extra table and it follows
            the model's embedding (hashed, compressed, ...).
        dim: D of the model's embeddings (used by ``"tied"``).
        sparse_grad: sparse gradients for the ``"table"`` weights; match the model's embedding so
            one optimiser serves all embedding parameters.
    """

    def __init__(
        self,
        schema: Schema,
        weights: FirstOrderWeights = "table",
        dim: int = 1,
        sparse_grad: bool = True,
    ) -> None:
        super().__init__()
        check_choice("first-order weights", weights, get_args(FirstOrderWeights))
        self.weights = weights
        self.num_fields = (
            schema.num_categorical + schema.num_multi_valued
        )  # "tied" reads pooled multi-valued fields too
        self.num_numeric = schema.num_numeric
        self.table: FullEmbedding | None = None
        self.field_vectors: nn.Parameter | None = None
        if weights == "table":
            self.table = FullEmbedding(schema, dim=1, sparse_grad=sparse_grad)
        else:
            self.field_vectors = nn.Parameter(torch.zeros(self.num_fields, dim))  # [F, D]
        self.numeric = nn.Linear(self.num_numeric, 1, bias=False) if self.num_numeric > 0 else None
        if self.numeric is not None:
            nn.init.zeros_(self.numeric.weight)  # the LR term starts at 0 (the table at ~0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, sparse: Tensor, dense: Tensor, embedded: Tensor) -> Tensor:
        """``sparse`` int64 ``[B, F]``, ``dense`` ``[B, Dn]``, ``embedded`` ``[B, F, D]`` (the
        model's field embeddings; read by ``"tied"`` only) -> ``[B]``."""
        if self.table is not None:
            out = self.table(sparse).sum(dim=(1, 2))  # [B, F, 1] -> [B]
        else:
            out = (embedded * self.field_vectors).sum(dim=(1, 2))  # [B, F, D] -> [B]
        if self.numeric is not None:
            out = out + self.numeric(dense).squeeze(-1)
        return out + self.bias

    def flops_per_example(self) -> int:
        return 2 * self.num_numeric


class FMInteraction(nn.Module):
    """Factorisation-machine pairwise term ``Σ_{i<j} ⟨v_i, v_j⟩``, computed in O(N·D) as
    ``0.5 · Σ_d ((Σ_i v_id)² − Σ_i v_id²)``. ``[B, N, D]`` -> ``[B]``. No parameters, no matmul."""

    def forward(self, v: Tensor) -> Tensor:
        square_of_sum = v.sum(dim=1).pow(2)  # [B, D]
        sum_of_squares = v.pow(2).sum(dim=1)  # [B, D]
        return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)

    def flops_per_example(self) -> int:
        return 0


class CrossLayer(nn.Module):
    """Full-rank DCNv2 cross layer ``x_{l+1} = x_0 ⊙ (W x_l + b) + x_l``.

    Args:
        dim: d, the width of ``x_0`` and ``x_l``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        """``x0``, ``x`` ``[B, d]`` -> ``[B, d]``."""
        return x0 * self.linear(x) + x

    def flops_per_example(self) -> int:
        return 2 * self.dim * self.dim


class MixtureCrossLayer(nn.Module):
    """Low-rank mixture-of-experts cross layer (DCN-Mix, DCNv2 paper arXiv 2008.13535, Eq. 3)::

        E_k(x_l) = x_0 ⊙ (U_k g(C_k g(V_kᵀ x_l)) + b)
        x_{l+1}  = Σ_k G_k(x_l) E_k(x_l) + x_l,     G(x_l) = softmax(W_g x_l) over the K experts

    ``b`` is shared by the experts of the layer. Because the gate weights sum to 1, the sum is
    computed as ``x_0 ⊙ (Σ_k G_k U_k h_k + b)``: one matmul over the stacked ``G_k h_k``. With one
    expert the gate is constant 1 and is left out.

    Args:
        dim: d. low_rank: r (< d). num_experts: K. activation: g.
    """

    def __init__(
        self, dim: int, low_rank: int, num_experts: int = 1, activation: ExpertActivation = "tanh"
    ) -> None:
        super().__init__()
        check_choice("cross expert activation", activation, get_args(ExpertActivation))
        self.dim, self.low_rank, self.num_experts = dim, low_rank, num_experts
        # Row-vector layout: v[k] = V_k [d, r], c[k] = C_kᵀ [r, r], u[k] = U_kᵀ [r, d].
        self.v = nn.Parameter(torch.empty(num_experts, dim, low_rank))
        self.c = nn.Parameter(torch.empty(num_experts, low_rank, low_rank))
        self.u = nn.Parameter(torch.empty(num_experts, low_rank, dim))
        for k in range(num_experts):
            for w in (self.v[k], self.c[k], self.u[k]):
                nn.init.xavier_uniform_(w)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.gate = nn.Linear(dim, num_experts, bias=False) if num_experts > 1 else None
        self.g = activation_module(activation)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        """``x0``, ``x`` ``[B, d]`` -> ``[B, d]``."""
        b, k, r = x.shape[0], self.num_experts, self.low_rank
        v = self.v.permute(1, 0, 2).reshape(self.dim, k * r)  # [d, K·r]
        h = self.g(x @ v).view(b, k, r).transpose(0, 1)  # [K, B, r]
        h = self.g(torch.bmm(h, self.c))  # [K, B, r]
        h = h.transpose(0, 1)  # [B, K, r]
        if self.gate is not None:
            h = h * torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)  # [B, K, r] · G_k
        y = h.reshape(b, k * r) @ self.u.reshape(k * r, self.dim)  # [B, d] = Σ_k G_k U_k h_k
        return x0 * (y + self.bias) + x

    def flops_per_example(self) -> int:
        d, k, r = self.dim, self.num_experts, self.low_rank
        gate = 2 * d * k if self.gate is not None else 0
        return 2 * d * k * r + 2 * k * r * r + 2 * k * r * d + gate


class CrossNetwork(nn.Module):
    """A stack of DCNv2 cross layers over one input ``x_0``: ``[B, d]`` -> ``[B, d]``.

    Args:
        dim: d, the input width.
        num_layers: number of cross layers (0 = identity).
        low_rank: None for full-rank :class:`CrossLayer`; r (1 <= r < d) for
            :class:`MixtureCrossLayer`.
        num_experts: K experts per low-rank layer (1 = no gate); must be 1 when full rank.
        expert_activation: g of the low-rank layers.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        low_rank: int | None = None,
        num_experts: int = 1,
        expert_activation: ExpertActivation = "tanh",
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_cross_layers must be >= 0 (0 = no cross network), got {num_layers}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if low_rank is None and num_experts != 1:
            raise ValueError(
                f"num_experts={num_experts} needs the low-rank cross: set low_rank (1 <= r < {dim}) "
                "or use num_experts=1 for the full-rank cross"
            )
        if low_rank is not None and not 1 <= low_rank < dim:
            raise ValueError(
                f"low_rank must be in [1, {dim - 1}] for a cross input of width {dim} (a rank >= the "
                f"width is no cheaper than full rank), got {low_rank}; use low_rank=None for full rank"
            )
        self.dim = dim
        layers: list[nn.Module]
        if low_rank is None:
            layers = [CrossLayer(dim) for _ in range(num_layers)]
        else:
            layers = [
                MixtureCrossLayer(dim, low_rank, num_experts, expert_activation) for _ in range(num_layers)
            ]
        self.layers = nn.ModuleList(layers)

    def forward(self, x0: Tensor) -> Tensor:
        """``x0`` ``[B, d]`` -> ``x_L`` ``[B, d]``."""
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x

    def flops_per_example(self) -> int:
        return sum(layer.flops_per_example() for layer in self.layers)
