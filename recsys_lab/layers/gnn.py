"""Heterogeneous message passing in plain PyTorch (``index_add_``), for PCF-GNN.

Nodes are feature values; the node type is the field, and node type f owns the contiguous rows
``offset_f .. offset_f + V_f - 1`` (the row space of a full embedding table). Relations are
directed edge types (field a -> field b and back, one pair per chosen field pair). One layer::

    h'_v = act( h_v W_self[t(v)] + b[t(v)] + Σ_r mean_{u : (u -> v) ∈ r} h_u W_r )

Neighbours are averaged before the relation's weight is applied (the same by linearity, and
N·d instead of E·d·d work). Torch-geometric is not used: it is not a dependency of the project,
and the graphs here (10^4..10^6 nodes, one node type per field) fit this 40-line layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class HeteroMessagePassing(nn.Module):
    """One layer of type-specific message passing: ``[N, d_in]`` -> ``[N, d_out]``.

    Args:
        type_sizes: V_f, the nodes of each type, in row order (types own contiguous row ranges).
        num_relations: R, directed edge types.
        in_dim, out_dim: node state widths.
        activation: apply ReLU to the output (False for a last, linear layer).
    """

    def __init__(
        self, type_sizes: list[int], num_relations: int, in_dim: int, out_dim: int, activation: bool = True
    ) -> None:
        super().__init__()
        self.type_sizes = list(type_sizes)
        self.num_relations = num_relations
        self.in_dim, self.out_dim = in_dim, out_dim
        self.activation = activation
        bound = 1 / math.sqrt(in_dim)
        self.self_weight = nn.Parameter(torch.empty(len(type_sizes), in_dim, out_dim).uniform_(-bound, bound))
        self.self_bias = nn.Parameter(torch.zeros(len(type_sizes), out_dim))
        self.rel_weight = nn.Parameter(torch.empty(num_relations, in_dim, out_dim).uniform_(-bound, bound))

    def forward(self, h: Tensor, src: list[Tensor], dst: list[Tensor], inv_degree: list[Tensor]) -> Tensor:
        """Args:
            h: ``[N, d_in]`` node states.
            src, dst: per relation r, int64 ``[E_r]`` source and destination rows.
            inv_degree: per relation r, float ``[N, 1]`` 1 / (in-degree under r), 0 where none.

        Returns ``[N, d_out]``.
        """
        if len(src) != self.num_relations:
            raise ValueError(f"HeteroMessagePassing expects {self.num_relations} relations, got {len(src)}")
        parts, start = [], 0
        for t, size in enumerate(self.type_sizes):  # type-specific self transform, row range per type
            parts.append(h[start : start + size] @ self.self_weight[t] + self.self_bias[t])  # [V_t, d_out]
            start += size
        out = torch.cat(parts, 0)  # [N, d_out]
        for r in range(self.num_relations):
            if src[r].numel() == 0:
                continue
            agg = torch.zeros_like(h).index_add_(0, dst[r], h[src[r]]) * inv_degree[r]  # [N, d_in] mean
            out = out + agg @ self.rel_weight[r]
        return torch.relu(out) if self.activation else out

    def flops(self, num_nodes: int, num_relations: int | None = None) -> int:
        """Matmul FLOPs of one forward over ``num_nodes`` nodes: the self transform plus one
        ``[N, d_in] @ [d_in, d_out]`` per relation that has edges (``num_relations`` of them;
        default all; a relation without edges is skipped)."""
        relations = self.num_relations if num_relations is None else num_relations
        return 2 * num_nodes * self.in_dim * self.out_dim * (1 + relations)


def inverse_degree(dst: Tensor, num_nodes: int) -> Tensor:
    """float ``[N, 1]``: 1 / in-degree from the destination rows ``dst`` ``[E]`` (0 if none)."""
    deg = torch.bincount(dst, minlength=num_nodes).float()
    return torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros(())).unsqueeze(1)
