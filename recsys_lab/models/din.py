"""DIN-style target attention: the candidate's event embedding scores each history event with a
small MLP; the weighted sum of the history joins the sample's features in an MLP (the classic
DLRM-with-sequence baseline, Zhou et al. 2018). Computed on the jagged history, no padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import MLP, Activation, check_choice
from recsys_lab.layers.sequence import EventEmbedding, history_length
from recsys_lab.models.base import CTRModel

Pooling = Literal["sum", "softmax"]


class DIN(CTRModel):
    """``logit = MLP([fields; numeric; q; Σ_j w_j k_j])`` with the target attention
    ``w_j = MLP_att([k_j; q; e_j − q; e_j ⊙ q])`` over the sample's history events j.

    ``q`` ``[E·D]`` is the candidate's event-column embedding (the same tables as the history's),
    ``e_j`` ``[E·D]`` event j's, and ``k_j = [e_j; a_j]`` adds an embedding of j's action bitmask.
    ``pooling=sum`` keeps DIN's unnormalised weights; ``softmax`` normalises them per sample.
    Samples without history pool to zero.

    Args:
        schema, embedding: dataset schema and embedding factory.
        attention_units: hidden widths of the attention MLP.
        hidden_units: hidden widths of the output MLP.
        activation: non-linearity of both MLPs.
        pooling: ``sum`` | ``softmax``.
        max_history: keep each sample's latest events (null = all the data gives).
        dropout: dropout of the output MLP.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        attention_units: Sequence[int] = (64, 32),
        hidden_units: Sequence[int] = (256, 128),
        activation: Activation = "relu",
        pooling: Pooling = "sum",
        max_history: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(schema)
        check_choice("model.pooling", pooling, ["sum", "softmax"])
        if max_history is not None and max_history < 0:
            raise ValueError(f"model.max_history must be >= 0 or null, got {max_history}")
        self.pooling = pooling
        self.max_history = max_history
        self.encoder = FeatureEncoder(schema, embedding)
        self.events = EventEmbedding(schema, embedding)
        q_dim = self.events.num_columns * self.events.dim  # E·D (0 without event features)
        self.has_history = q_dim > 0
        self.action_dim = self.events.dim
        self.action_embedding: nn.Embedding | None = None
        self.attention: MLP | None = None
        pooled = 0
        if self.has_history:
            self.action_embedding = nn.Embedding(2 ** len(schema.action_names), self.action_dim)
            nn.init.normal_(self.action_embedding.weight, std=1e-2)
            self.attention = MLP(4 * q_dim + self.action_dim, attention_units, 1, activation)
            pooled = q_dim + self.action_dim
        self.q_dim = q_dim
        self.mlp = MLP(self.encoder.flat_dim + q_dim + pooled, hidden_units, 1, activation, dropout)

    def pool(self, q: Tensor, history: Jagged) -> Tensor:
        """``q`` ``[B, E·D]`` and the jagged history -> pooled interest ``[B, E·D + Da]``."""
        assert self.attention is not None and self.action_embedding is not None
        b = q.shape[0]
        out = q.new_zeros(b, self.q_dim + self.action_dim)
        if history.num_events == 0:
            return out
        seg = history.segment_ids()  # [M]
        e = self.events.history(history.values).flatten(1)  # [M, E·D]
        a = self.action_embedding(
            history.actions.clamp(0, self.action_embedding.num_embeddings - 1)
        )  # [M, Da]
        qj = q[seg]  # [M, E·D] the candidate of each event's sample
        k = torch.cat([e, a], dim=1)  # [M, E·D + Da]
        score = self.attention(torch.cat([k, qj, e - qj, e * qj], dim=1)).squeeze(-1)  # [M]
        if self.pooling == "softmax":
            peak = torch.full((b,), float("-inf"), device=q.device).scatter_reduce(
                0, seg, score.detach(), "amax", include_self=True
            )
            w = torch.exp(score - peak[seg])
            w = w / torch.zeros(b, device=q.device).index_add(0, seg, w)[seg]
        else:
            w = score
        return out.index_add(0, seg, w[:, None] * k)

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        parts = [self.encoder(batch)]  # [B, F·D + Dn]
        if self.has_history:
            q = self.events.candidates(batch.sparse).flatten(1)  # [B, E·D]
            history = batch.history
            if history is None:
                pooled = q.new_zeros(batch.size, self.q_dim + self.action_dim)
            else:
                if self.max_history is not None:
                    history = history.truncate(self.max_history)
                pooled = self.pool(q, history)
            parts += [q, pooled]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(-1)

    def flops_per_example(self, history_len: int | None = None) -> int:
        """Per sample with ``history_len`` history events: the output MLP once and the attention MLP
        once per event (``L · 2·Σ in·out``; the pooling itself is element-wise).

        ``history_len=None`` means ``max_history`` (64 if unbounded), the number scaling studies
        report; a given length is capped at ``max_history`` as :meth:`forward` truncates.
        """
        flops = self.mlp.flops_per_example()
        if self.attention is not None:
            flops += history_length(history_len, self.max_history) * self.attention.flops_per_example()
        return int(flops)
