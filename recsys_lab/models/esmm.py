"""ESMM: entire-space multi-task model (Ma et al., SIGIR 2018) over the click -> conversion funnel.

Two towers on shared embeddings predict pCTR and pCVR (conversion given a click); the model is
trained on every impression with two labels: click (pCTR) and click-and-convert (pCTCVR =
pCTR · pCVR), so pCVR is learnt over the entire space without sample-selection bias.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import MLP, Activation
from recsys_lab.layers.multitask import product_logit
from recsys_lab.models.base import MultiTaskModel


class ESMM(MultiTaskModel):
    """``logit_ctr = MLP_ctr(x)``, ``logit_cvr = MLP_cvr(x)``, ``pCTCVR = σ(logit_ctr)·σ(logit_cvr)``.

    :meth:`forward_tasks` returns ``{labels[0]: logit_ctr, labels[1]: logit(pCTCVR)}``; the
    second label must be "clicked and converted" on every impression (as the synthetic world's
    and the tabular sample's ``conversion`` are). :meth:`cvr_logits` gives pCVR's logits.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (shared by both towers).
        labels: exactly two labels: the click and the click-and-conversion label.
        hidden_units: each tower's hidden widths.
        activation, dropout, batch_norm: see :class:`~recsys_lab.layers.mlp.MLP`.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        labels: Sequence[str] = ("click", "conversion"),
        hidden_units: Sequence[int] = (256, 128),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(schema, labels)
        if len(self.labels) != 2:
            raise ValueError(
                f"ESMM predicts the click -> conversion funnel: model.labels={list(labels)} must be two labels, "
                "[click, <clicked-and-converted label>]"
            )
        if not hidden_units:
            raise ValueError("ESMM needs at least one hidden layer per tower: set model.hidden_units")
        self.encoder = FeatureEncoder(schema, embedding)
        self.ctr = MLP(self.encoder.flat_dim, hidden_units, 1, activation, dropout, batch_norm)
        self.cvr = MLP(self.encoder.flat_dim, hidden_units, 1, activation, dropout, batch_norm)

    def _towers(self, batch: Batch) -> tuple[Tensor, Tensor]:
        x = self.encoder(batch)  # [B, I]
        return self.ctr(x).squeeze(-1), self.cvr(x).squeeze(-1)  # [B], [B]

    def cvr_logits(self, batch: Batch) -> Tensor:
        """pCVR's logits ``[B]`` (conversion given a click)."""
        return self._towers(batch)[1]

    def forward_tasks(self, batch: Batch) -> dict[str, Tensor]:
        ctr, cvr = self._towers(batch)
        return {self.labels[0]: ctr, self.labels[1]: product_logit(ctr, cvr)}

    def flops_per_example(self) -> int:
        return self.ctr.flops_per_example() + self.cvr.flops_per_example()
