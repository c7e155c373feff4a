"""PLE: progressive layered extraction (Tang et al., RecSys 2020) — stacked extraction layers of
task-specific and shared experts with gates, then a tower per label."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import Activation
from recsys_lab.layers.multitask import ExtractionLayer, Towers
from recsys_lab.models.base import MultiTaskModel


class PLE(MultiTaskModel):
    """``num_levels`` :class:`~recsys_lab.layers.multitask.ExtractionLayer` s (CGC when 1), then towers.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding.
        labels: the labels, primary first.
        num_levels: extraction layers (1 = CGC).
        num_task_experts: experts per label in each layer.
        num_shared_experts: shared experts in each layer.
        expert_units: each expert's MLP widths.
        tower_units: each tower's hidden widths.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        labels: Sequence[str] = ("click", "conversion"),
        num_levels: int = 2,
        num_task_experts: int = 2,
        num_shared_experts: int = 2,
        expert_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (64,),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(schema, labels)
        if num_levels < 1 or num_task_experts < 1 or num_shared_experts < 1:
            raise ValueError(
                f"PLE needs num_levels, num_task_experts and num_shared_experts >= 1, got {num_levels}, "
                f"{num_task_experts}, {num_shared_experts}"
            )
        self.encoder = FeatureEncoder(schema, embedding)
        layers = []
        width = self.encoder.flat_dim
        for level in range(num_levels):
            layer = ExtractionLayer(
                width,
                len(self.labels),
                num_task_experts,
                num_shared_experts,
                expert_units,
                shared_output=level < num_levels - 1,
                activation=activation,
                dropout=dropout,
                batch_norm=batch_norm,
            )
            layers.append(layer)
            width = layer.out_dim
        self.levels = nn.ModuleList(layers)
        self.towers = Towers(width, self.labels, tower_units, activation, dropout, batch_norm)

    def forward_tasks(self, batch: Batch) -> dict[str, Tensor]:
        x = self.encoder(batch)  # [B, I]
        task_inputs: list[Tensor] = [x] * len(self.labels)
        shared: Tensor | None = x
        for layer in self.levels:
            assert shared is not None
            task_inputs, shared = layer(task_inputs, shared)
        return self.towers(task_inputs)

    def flops_per_example(self) -> int:
        return sum(layer.flops_per_example() for layer in self.levels) + self.towers.flops_per_example()
