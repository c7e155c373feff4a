"""Base class of every CTR model: forward on a Batch, plus cost accounting."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FieldEmbedding


class CTRModel(nn.Module, ABC):
    """A ranking model. Subclasses build themselves from the schema and implement ``forward``.

    ``forward(batch) -> logits [B]`` for the ``click`` label. Parameters that live in
    :class:`FieldEmbedding` modules count as *embedding* parameters (optimised by the sparse
    optimiser); all others are *dense*.
    """

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema

    @abstractmethod
    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""

    # -- parameter groups ----------------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        seen: set[int] = set()
        out: list[nn.Parameter] = []
        for m in self.modules():
            if isinstance(m, FieldEmbedding):
                dense = {id(p) for p in m.dense_parameters()}
                for p in m.parameters():
                    if id(p) not in seen and id(p) not in dense:
                        seen.add(id(p))
                        out.append(p)
        return out

    def dense_parameters(self) -> list[nn.Parameter]:
        emb = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in emb]

    def num_params(self, embedding: bool = True, dense: bool = True) -> int:
        """Number of parameters: embedding tables, dense weights, or both."""
        total = 0
        if embedding:
            total += sum(p.numel() for p in self.embedding_parameters())
            total += sum(m.fused_table_values() for m in self.modules() if isinstance(m, FieldEmbedding))
        if dense:
            total += sum(p.numel() for p in self.dense_parameters())
        return total

    @abstractmethod
    def flops_per_example(self) -> int:
        """Forward matmul FLOPs per example (2·m·n·k per matmul, as ``torch.utils.flop_counter``
        counts them). Element-wise ops and embedding lookups are not counted."""
