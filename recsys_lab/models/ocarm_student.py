"""OCARM student: retention from observable, pre-conversion features only (it serves).

A sequence-fusion encoder — field embeddings, numeric features and the behaviour history pooled
by attention queried with the candidate's item fields — feeds an MLP whose output ``r_s [B, H]``
gives the logit and, through a linear projection, matches the frozen teacher's representation
during training (the distillation lives in :mod:`recsys_lab.objectives.distill`). The student never
reads onboarding content: ``forward`` refuses a batch that carries privileged data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import FeatureRole, Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import MLP, Activation
from recsys_lab.layers.pooling import HistoryPooling
from recsys_lab.models.base import CTRModel


class PrivilegedDataError(RuntimeError):
    """A serving model was given training-only (privileged) data."""


class OCARMStudent(CTRModel):
    """``r_s = MLP([obs; pool(history | item)])``, ``logit = w·r_s``, ``proj = P·r_s [B, Ht]``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding.
        hidden_units: MLP widths; H = the last.
        teacher_dim: Ht, width of the teacher representation the projection maps to.
        history: pool ``Batch.history``; None = when the schema has sequence features.
        history_dim, max_history: width and length of the history pooling.
        activation, dropout: of the MLP.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        hidden_units: Sequence[int] = (64, 32),
        teacher_dim: int = 32,
        history: bool | None = None,
        history_dim: int = 16,
        max_history: int = 64,
        activation: Activation = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(schema)
        if len(hidden_units) == 0:
            raise ValueError("OCARMStudent needs at least one hidden layer: set model.hidden_units")
        if teacher_dim < 1:
            raise ValueError(f"OCARMStudent: teacher_dim={teacher_dim} must be >= 1")
        self.encoder = FeatureEncoder(schema, embedding)
        use_history = bool(schema.sequence) if history is None else history
        self.item_fields = [i for i, f in enumerate(schema.categorical) if f.role == FeatureRole.ITEM]
        self.history: HistoryPooling | None = None
        in_dim = self.encoder.flat_dim
        if use_history:
            self.history = HistoryPooling(
                schema, history_dim, self.encoder.dim if self.item_fields else 0, max_history
            )
            in_dim += history_dim
        self.mlp = MLP(in_dim, hidden_units, None, activation, dropout)
        self.rep_dim = self.mlp.out_features
        self.teacher_dim = teacher_dim
        self.head = nn.Linear(self.rep_dim, 1)
        self.projection = nn.Linear(self.rep_dim, teacher_dim)

    def forward_rep(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(representation [B, H], logits [B])``."""
        if batch.privileged is not None:
            raise PrivilegedDataError(
                "OCARMStudent received a batch with privileged (onboarding) data; the student serves "
                "and must only see observable features: use data.privileged=false"
            )
        emb = self.encoder.embed(batch)  # [B, F, D]
        x = self.encoder.flatten(emb, self.encoder.numeric(batch))
        if self.history is not None:
            query = emb[:, self.item_fields].mean(1) if self.item_fields else None
            x = torch.cat([x, self.history(batch.history, query)], dim=1)
        rep = self.mlp(x)
        return rep, self.head(rep).squeeze(-1)

    def project(self, rep: Tensor) -> Tensor:
        """``[B, H]`` -> ``[B, Ht]`` (compared with the teacher's representation)."""
        return self.projection(rep)

    def forward(self, batch: Batch) -> Tensor:
        """Retention logits ``[B]``."""
        return self.forward_rep(batch)[1]

    def flops_per_example(self) -> int:
        """MLP, logit head and the history pooling (over ``max_history`` padded events, whatever
        the sample's history length); the distillation projection runs in training only."""
        flops = self.mlp.flops_per_example() + 2 * self.rep_dim
        if self.history is not None:
            flops += self.history.flops_per_example()
        return flops
