"""DeepFM (Guo et al. 2017): first-order term + FM pairwise term + MLP over shared embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.apg import APGConfig, deep_mlp, run_deep
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder, uses_sparse_gradients
from recsys_lab.layers.interactions import FirstOrder, FirstOrderWeights, FMInteraction
from recsys_lab.layers.mlp import Activation
from recsys_lab.models.base import CTRModel


class DeepFM(CTRModel):
    """``logit = LR(ids, x_dense) + FM(tokens) + MLP(flatten(tokens))``.

    The tokens ``[B, F + Dn, D]`` are the categorical field embeddings plus one token per numeric
    feature (value × learned vector), shared by the FM and the MLP as in the paper.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        hidden_units: hidden widths of the deep part (at least one); a final Linear maps to a logit.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
        first_order: ``"table"`` (a learned scalar per id, a full table) or ``"tied"`` (a learned
            vector per field dotted with the shared embedding; no extra table, follows hashed or
            compressed embeddings). See :class:`~recsys_lab.layers.interactions.FirstOrder`.
        apg: None for a static deep part, or an :class:`~recsys_lab.layers.apg.APGConfig` (or a
            mapping of its fields) to make its hidden layers APG layers.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        hidden_units: Sequence[int] = (256, 128),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        first_order: FirstOrderWeights = "table",
        apg: APGConfig | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(schema)
        if len(hidden_units) == 0:
            raise ValueError(
                "DeepFM needs at least one hidden layer in its deep part: set model.hidden_units, e.g. [256, 128]"
            )
        self.encoder = FeatureEncoder(schema, embedding, numeric_tokens=True)
        d = self.encoder.dim
        self.first_order = FirstOrder(
            schema, first_order, dim=d, sparse_grad=uses_sparse_gradients(self.encoder.embedding)
        )
        self.fm = FMInteraction()
        self.mlp, self.apg_fields = deep_mlp(
            self.encoder.num_tokens * d, hidden_units, 1, activation, dropout, batch_norm, apg, schema, d
        )

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        embedded = self.encoder.embed(batch)  # [B, F, D]
        dense = self.encoder.numeric(batch)  # [B, Dn]
        tokens = self.encoder.tokens(embedded, dense)  # [B, F + Dn, D]
        deep = run_deep(
            self.mlp, tokens.flatten(1), self.apg_fields, lambda: embedded
        )  # [B, (F + Dn)·D] -> [B, 1]
        return self.first_order(batch.sparse, dense, embedded) + self.fm(tokens) + deep.squeeze(-1)

    def flops_per_example(self) -> int:
        return (
            self.first_order.flops_per_example() + self.fm.flops_per_example() + self.mlp.flops_per_example()
        )
