"""ExFM model: the foundation model (FM) and the vertical models (VMs) of ExFM, one class.

An MLP backbone over the field embeddings (plus, when the schema has sequence features, a
target-attention pooling of the behaviour history) feeds a **serving head** (the click logit the
model is evaluated and served on) and, for VMs, an **auxiliary head** that learns from the FM's
logged predictions. The auxiliary head's gradient into the shared backbone is scaled by ``beta``
(identity forward), so the FM label shapes the backbone only as much as configured, and the
serving head never sees it. ``conf/model/exfm_fm.yaml`` (large, with history) and
``conf/model/exfm_vm.yaml`` (small, with the auxiliary head) are the two uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import FeatureRole, Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.heads import AuxiliaryHead
from recsys_lab.layers.mlp import MLP, Activation
from recsys_lab.layers.pooling import HistoryPooling
from recsys_lab.models.base import CTRModel


class ExFMModel(CTRModel):
    """``h = MLP([e_1; ...; e_F; x_dense; pool(history | item)])``; ``serving = w·h``,
    ``aux = w'·scale_grad(h, beta)``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        hidden_units: widths of the backbone MLP (at least one); H = the last.
        history: read ``Batch.history`` with attention pooling queried by the candidate's item
            fields; ``None`` = when the schema has sequence features.
        history_dim: width of the history event embeddings.
        max_history: events pooled per sample (the most recent).
        aux_head: add the auxiliary (distillation) head.
        beta: gradient scale of the auxiliary head into the backbone.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        hidden_units: Sequence[int] = (64, 32),
        history: bool | None = False,
        history_dim: int = 16,
        max_history: int = 64,
        aux_head: bool = True,
        beta: float = 1.0,
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(schema)
        if len(hidden_units) == 0:
            raise ValueError(
                "ExFMModel needs at least one hidden layer: set model.hidden_units, e.g. [64, 32]"
            )
        self.encoder = FeatureEncoder(schema, embedding)
        use_history = bool(schema.sequence) if history is None else history
        # The candidate's item fields (ad, category, domain) query the history.
        self.item_fields = [i for i, f in enumerate(schema.categorical) if f.role == FeatureRole.ITEM]
        self.history: HistoryPooling | None = None
        in_dim = self.encoder.flat_dim
        if use_history:
            query_dim = self.encoder.dim if self.item_fields else 0
            self.history = HistoryPooling(schema, history_dim, query_dim, max_history)
            in_dim += history_dim
        self.backbone = MLP(in_dim, hidden_units, None, activation, dropout, batch_norm)
        width = self.backbone.out_features
        self.serving_head = nn.Linear(width, 1)
        self.aux_head = AuxiliaryHead(width, beta) if aux_head else None

    def representation(self, batch: Batch) -> Tensor:
        """Backbone output ``[B, H]``."""
        emb = self.encoder.embed(batch)  # [B, F, D]
        x = self.encoder.flatten(emb, self.encoder.numeric(batch))  # [B, F·D + Dn]
        if self.history is not None:
            query = emb[:, self.item_fields].mean(1) if self.item_fields else None  # [B, D]
            x = torch.cat([x, self.history(batch.history, query)], dim=1)  # [B, F·D + Dn + Dh]
        return self.backbone(x)

    def forward_heads(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """``(serving logits [B], auxiliary logits [B] or None)`` from one backbone pass."""
        h = self.representation(batch)
        aux = self.aux_head(h) if self.aux_head is not None else None
        return self.serving_head(h).squeeze(-1), aux

    def forward(self, batch: Batch) -> Tensor:
        """Serving-head click logits ``[B]``."""
        return self.serving_head(self.representation(batch)).squeeze(-1)

    def flops_per_example(self) -> int:
        """The serving path (the auxiliary head runs in training only)."""
        flops = self.backbone.flops_per_example() + 2 * self.backbone.out_features
        if self.history is not None:
            flops += self.history.flops_per_example()
        return flops
