"""Attention pooling over a padded set or sequence, and helpers that pad jagged events.

B = batch size, L = set/sequence length, D = item width, Dq = query width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Jagged
from recsys_lab.data.schema import Schema


class AttentionPooling(nn.Module):
    """Softmax-weighted sum of ``L`` items: ``Σ_j softmax_j(⟨W_k x_j, q⟩ / √H) · x_j``.

    The query ``q`` is a learned vector, plus ``W_q · query`` when a per-sample query is given
    (target attention). Masked positions get no weight; a row with no valid item pools to zeros.

    Args:
        dim: D, the item width (the output width too).
        query_dim: Dq of the per-sample query (0 = learned query only).
        hidden: H, the width of the key/query space.
    """

    def __init__(self, dim: int, query_dim: int = 0, hidden: int = 32) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or query_dim < 0:
            raise ValueError(
                f"AttentionPooling needs dim >= 1, hidden >= 1, query_dim >= 0; got {dim}, {hidden}, {query_dim}"
            )
        self.dim, self.query_dim, self.hidden = dim, query_dim, hidden
        self.key = nn.Linear(dim, hidden, bias=False)
        self.query = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))
        self.query_proj = nn.Linear(query_dim, hidden, bias=False) if query_dim > 0 else None

    def forward(self, x: Tensor, mask: Tensor, query: Tensor | None = None) -> Tensor:
        """``x`` ``[..., L, D]``, ``mask`` bool ``[..., L]``, ``query`` ``[..., Dq]`` -> ``[..., D]``."""
        q = self.query  # [H]
        if self.query_proj is not None:
            if query is None:
                raise ValueError("AttentionPooling was built with query_dim > 0: pass a query")
            q = q + self.query_proj(query)  # [..., H]
        scores = (self.key(x) * q.unsqueeze(-2)).sum(-1) / math.sqrt(self.hidden)  # [..., L]
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0) * mask  # all-masked rows -> 0
        return (weights.unsqueeze(-1) * x).sum(-2)  # [..., D]

    def flops_per_example(self, length: int) -> int:
        """Matmul FLOPs for one sample of ``length`` items: the key projection ``2·L·D·H`` and the
        query projection ``2·Dq·H``. The scores and the weighted sum are element-wise products
        and sums here, which ``flop_counter`` (and so this count) leaves out."""
        flops = 2 * length * self.dim * self.hidden
        if self.query_proj is not None:
            flops += 2 * self.query_dim * self.hidden
        return flops


def group_positions(keys: Tensor) -> Tensor:
    """Position of each row within its run of equal consecutive ``keys`` (int64 ``[N]`` -> ``[N]``)."""
    n = keys.numel()
    if n == 0:
        return keys.new_zeros(0)
    starts = torch.ones(n, dtype=torch.bool, device=keys.device)
    starts[1:] = keys[1:] != keys[:-1]
    idx = torch.arange(n, device=keys.device)
    run_start = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), 0).values
    return idx - run_start


class HistoryPooling(nn.Module):
    """Embeds ``Batch.history`` (every sequence column of the schema, plus the action bitmask) and
    pools the ``max_len`` latest events with :class:`AttentionPooling`.

    ``Jagged`` (B samples) and an optional query ``[B, Dq]`` -> ``[B, D]``. History tables are
    plain ``nn.Embedding`` (dense gradients: they train with the dense optimiser).

    Args:
        schema: supplies the sequence features (``schema.sequence``) and ``action_names``.
        dim: D, the event embedding width.
        query_dim: Dq (0 = learned query only).
        max_len: events kept per sample (the most recent).
        hidden: attention key/query width.
    """

    def __init__(
        self, schema: Schema, dim: int, query_dim: int = 0, max_len: int = 64, hidden: int = 32
    ) -> None:
        super().__init__()
        if not schema.sequence:
            raise ValueError("HistoryPooling needs sequence features in the schema (e.g. data=synthetic_seq)")
        if max_len < 1:
            raise ValueError(f"HistoryPooling: max_len={max_len} must be >= 1")
        self.dim, self.max_len = dim, max_len
        self.tables = nn.ModuleList(nn.Embedding(f.vocab_size, dim) for f in schema.sequence)
        for t in self.tables:
            nn.init.normal_(t.weight, std=0.05)
        self.num_action_codes = 2 ** max(len(schema.action_names), 1)
        self.actions = nn.Embedding(self.num_action_codes, dim)
        nn.init.normal_(self.actions.weight, std=0.05)
        self.pool = AttentionPooling(dim, query_dim, hidden)

    def forward(self, history: Jagged | None, query: Tensor | None = None) -> Tensor:
        """``history`` of B samples (``values [N, E]``), ``query`` ``[B, Dq]`` -> ``[B, D]``."""
        if history is None:
            raise ValueError(
                "This model reads Batch.history but the batch has none: set data.max_history > 0 "
                "(or turn the model's history off)"
            )
        values, actions, _, mask = history.to_padded(self.max_len)  # [B, L, E], [B, L], _, [B, L]
        if values.shape[-1] != len(self.tables):
            raise ValueError(
                f"Batch.history has {values.shape[-1]} columns but the schema has {len(self.tables)} "
                "sequence features"
            )
        x = self.actions(actions.clamp(0, self.num_action_codes - 1))  # [B, L, D]
        for i, table in enumerate(self.tables):
            x = x + table(values[..., i])
        return self.pool(x, mask, query)  # [B, D]

    def flops_per_example(self) -> int:
        return self.pool.flops_per_example(self.max_len)
