"""MMoE: multi-gate mixture of experts (Ma et al., KDD 2018) — shared experts, one gate per label."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import Activation
from recsys_lab.layers.multitask import MixtureOfExperts, Towers
from recsys_lab.models.base import MultiTaskModel


class MMoE(MultiTaskModel):
    """``x`` = flat inputs; ``h_t = Σ_k softmax(W_t x)_k · Expert_k(x)``; ``logit_t = Tower_t(h_t)``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding.
        labels: the labels, primary first (one gate and one tower each).
        num_experts: K shared experts.
        expert_units: each expert's MLP widths.
        tower_units: each tower's hidden widths.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        labels: Sequence[str] = ("click", "conversion"),
        num_experts: int = 4,
        expert_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (64,),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(schema, labels)
        self.encoder = FeatureEncoder(schema, embedding)
        self.moe = MixtureOfExperts(
            self.encoder.flat_dim,
            num_experts,
            len(self.labels),
            expert_units,
            activation,
            dropout,
            batch_norm,
        )
        self.towers = Towers(self.moe.out_dim, self.labels, tower_units, activation, dropout, batch_norm)

    def gate_weights(self, batch: Batch) -> dict[str, Tensor]:
        """Label -> its gate's expert weights ``[B, K]`` (rows sum to 1)."""
        x = self.encoder(batch)
        return {label: gate(x) for label, gate in zip(self.labels, self.moe.gates)}

    def forward_tasks(self, batch: Batch) -> dict[str, Tensor]:
        return self.towers(self.moe(self.encoder(batch)))  # T x [B, H] -> label -> [B]

    def flops_per_example(self) -> int:
        return self.moe.flops_per_example() + self.towers.flops_per_example()
