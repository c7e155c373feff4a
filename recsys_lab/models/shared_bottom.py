"""Shared-bottom multi-task model: one MLP over the inputs shared by every label, then a tower per label."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import MLP, Activation
from recsys_lab.layers.multitask import Towers
from recsys_lab.models.base import MultiTaskModel


class SharedBottom(MultiTaskModel):
    """``h = MLP_bottom([e_1; ...; e_F; x_dense])``, ``logit_t = Tower_t(h)``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding.
        labels: the labels, primary first (one tower each).
        bottom_units: the shared MLP's widths (at least one).
        tower_units: each tower's hidden widths (a final Linear maps to the logit).
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        labels: Sequence[str] = ("click", "conversion"),
        bottom_units: Sequence[int] = (256, 128),
        tower_units: Sequence[int] = (64,),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(schema, labels)
        if not bottom_units:
            raise ValueError(
                "SharedBottom needs at least one shared layer: set model.bottom_units, e.g. [256, 128]"
            )
        self.encoder = FeatureEncoder(schema, embedding)
        self.bottom = MLP(self.encoder.flat_dim, bottom_units, None, activation, dropout, batch_norm)
        self.towers = Towers(
            self.bottom.out_features, self.labels, tower_units, activation, dropout, batch_norm
        )

    def forward_tasks(self, batch: Batch) -> dict[str, Tensor]:
        h = self.bottom(self.encoder(batch))  # [B, H]
        return self.towers([h] * len(self.labels))

    def flops_per_example(self) -> int:
        return self.bottom.flops_per_example() + self.towers.flops_per_example()
