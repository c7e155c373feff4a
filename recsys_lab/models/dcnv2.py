"""DCNv2 (Wang et al. 2021, arXiv 2008.13535): a cross network and an MLP, stacked or parallel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.apg import APGConfig, deep_mlp, run_deep
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.interactions import CrossNetwork, ExpertActivation
from recsys_lab.layers.mlp import Activation, check_choice
from recsys_lab.models.base import CTRModel

Structure = Literal["stacked", "parallel"]


class DCNv2(CTRModel):
    """``x_0 = [e_1; ...; e_F; x_dense]`` (width d = F·D + Dn), then

    - stacked:  ``logit = w · MLP(Cross(x_0))``
    - parallel: ``logit = w · [Cross(x_0); MLP(x_0)]``

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        num_cross_layers: cross layers (>= 0).
        structure: ``"stacked"`` or ``"parallel"``.
        low_rank: None for full-rank cross layers, or the rank r (1 <= r < d) of the low-rank
            mixture-of-experts cross (DCN-Mix).
        num_experts: experts per low-rank cross layer (must be 1 when full rank).
        expert_activation: g of the low-rank experts.
        hidden_units: hidden widths of the MLP; may be empty only when stacked (a cross-only model).
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
        apg: None for a static MLP, or an :class:`~recsys_lab.layers.apg.APGConfig` (or a mapping
            of its fields) to make the MLP's hidden layers APG layers (needs hidden_units).
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        num_cross_layers: int = 3,
        structure: Structure = "parallel",
        low_rank: int | None = None,
        num_experts: int = 1,
        expert_activation: ExpertActivation = "tanh",
        hidden_units: Sequence[int] = (256, 128),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        apg: APGConfig | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(schema)
        check_choice("DCNv2 structure", structure, get_args(Structure))
        if structure == "parallel" and len(hidden_units) == 0:
            raise ValueError(
                "DCNv2 structure=parallel needs an MLP: set model.hidden_units (e.g. [256, 128]), or use "
                "structure=stacked with hidden_units=[] for a cross-only model"
            )
        if num_cross_layers == 0 and len(hidden_units) == 0:
            raise ValueError(
                "DCNv2 with num_cross_layers=0 and hidden_units=[] is a linear model: set at least one of them"
            )
        self.structure = structure
        self.encoder = FeatureEncoder(schema, embedding)
        d = self.encoder.flat_dim
        self.cross = CrossNetwork(d, num_cross_layers, low_rank, num_experts, expert_activation)
        if apg is not None and len(hidden_units) == 0:
            raise ValueError("DCNv2 with model.apg needs an MLP to adapt: set model.hidden_units")
        self.mlp, self.apg_fields = deep_mlp(
            d, hidden_units, None, activation, dropout, batch_norm, apg, schema, self.encoder.dim
        )
        head_in = self.mlp.out_features if structure == "stacked" else d + self.mlp.out_features
        self.head = nn.Linear(head_in, 1)

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        x0 = self.encoder(batch)  # [B, d]
        if self.structure == "stacked":
            h = self._mlp(self.cross(x0), batch)  # [B, hidden[-1]] (or [B, d] without hidden layers)
        else:
            h = torch.cat([self.cross(x0), self._mlp(x0, batch)], dim=1)  # [B, d + hidden[-1]]
        return self.head(h).squeeze(-1)

    def _mlp(self, x: Tensor, batch: Batch) -> Tensor:
        return run_deep(self.mlp, x, self.apg_fields, lambda: self.encoder.embed(batch))

    def flops_per_example(self) -> int:
        head = 2 * self.head.in_features * self.head.out_features
        return self.cross.flops_per_example() + self.mlp.flops_per_example() + head
