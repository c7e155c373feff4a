"""DNN: all field embeddings concatenated with the numeric features, then an MLP to one logit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.apg import APGConfig, deep_mlp, run_deep
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import Activation
from recsys_lab.models.base import CTRModel


class DNN(CTRModel):
    """``logit = MLP([e_1; ...; e_F; x_dense])``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        hidden_units: hidden widths of the MLP (at least one); a final Linear maps to the logit.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
        apg: None for a static MLP, or an :class:`~recsys_lab.layers.apg.APGConfig` (or a mapping
            of its fields) to make its hidden layers APG layers.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        hidden_units: Sequence[int] = (256, 128),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        apg: APGConfig | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(schema)
        if len(hidden_units) == 0:
            raise ValueError("DNN needs at least one hidden layer: set model.hidden_units, e.g. [256, 128]")
        self.encoder = FeatureEncoder(schema, embedding)
        d, flat = self.encoder.dim, self.encoder.flat_dim
        self.mlp, self.apg_fields = deep_mlp(
            flat, hidden_units, 1, activation, dropout, batch_norm, apg, schema, d
        )

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        x = self.encoder(batch)  # [B, F·D + Dn]
        return run_deep(self.mlp, x, self.apg_fields, lambda: self.encoder.embed(batch)).squeeze(-1)

    def flops_per_example(self) -> int:
        return self.mlp.flops_per_example()
