"""The input encoder every model shares: categorical embeddings, numeric features, and their
flat or token views.

B = batch size, F = categorical fields, Dn = numeric features, D = embedding width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory

#: Flat inputs at least ``ALIGN_FROM`` wide are zero-padded to a multiple of ``FLAT_ALIGN``.
FLAT_ALIGN = 16
ALIGN_FROM = 256


def aligned_width(width: int) -> int:
    """The flat input width actually used for ``width`` real columns.

    MKL's fp32 GEMM runs 20–35% slower when an operand's inner width is not a multiple of 16 (on
    the 2-core dev machine, Criteo's 26·16 + 13 = 429 columns: 111–132 GFLOP/s against 171–182
    at 432; docs/benchmarks.md). Zero columns stay zero through every layer that reads the flat
    input (MLPs, DCNv2's ``x0 ⊙ (W x + b) + x``) and cost 16/429 ≈ 1% extra FLOPs. Narrow inputs
    are left alone: their GEMMs are small and padding would be a large share of them.
    """
    if width < ALIGN_FROM or width % FLAT_ALIGN == 0:
        return width
    return width + FLAT_ALIGN - width % FLAT_ALIGN


def uses_sparse_gradients(module: nn.Module) -> bool:
    """Whether any ``nn.Embedding`` inside ``module`` emits sparse gradients."""
    return any(m.sparse for m in module.modules() if isinstance(m, nn.Embedding))


class NumericEmbedding(nn.Module):
    """One token per numeric feature: value times a learned vector, ``x_j · v_j``.

    ``[B, Dn]`` -> ``[B, Dn, D]``. Element-wise only (no matmul FLOPs).

    Args:
        num_features: Dn.
        dim: D, the token width (match the categorical embedding width).
        init_std: standard deviation of the normal initialisation of the vectors.
    """

    def __init__(self, num_features: int, dim: int, init_std: float = 1e-2) -> None:
        super().__init__()
        if num_features < 1 or dim < 1:
            raise ValueError(
                f"NumericEmbedding needs num_features >= 1 and dim >= 1, got {num_features}, {dim}"
            )
        self.num_features = num_features
        self.dim = dim
        self.weight = nn.Parameter(torch.randn(num_features, dim) * init_std)  # [Dn, D]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` float ``[B, Dn]`` -> ``[B, Dn, D]``."""
        return x.unsqueeze(-1) * self.weight  # [B, Dn, 1] * [Dn, D]


class FeatureEncoder(nn.Module):
    """Builds the model's embedding from the schema and exposes the inputs in the shapes models use.

    - :meth:`embed`: categorical field embeddings ``[B, F, D]``;
    - :meth:`numeric`: numeric features ``[B, Dn]``;
    - :meth:`forward` / :meth:`flatten`: flat concat ``[B, F·D + Dn]`` (MLP-style models);
    - :meth:`tokens`: ``[B, F + Dn, D]`` with one :class:`NumericEmbedding` token per numeric
      feature (only when built with ``numeric_tokens=True``).

    Args:
        schema: the dataset schema.
        embedding: factory ``schema -> FieldEmbedding`` (the ``embedding`` config group).
        numeric_tokens: build a :class:`NumericEmbedding` for :meth:`tokens`.

    Attributes:
        num_fields: F. num_numeric: Dn. dim: D. num_tokens: F + Dn.
        flat_dim: width of the flat input, F·D + Dn rounded up to a multiple of
            :data:`FLAT_ALIGN` when it is at least :data:`ALIGN_FROM` (zero columns appended).
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        numeric_tokens: bool = False,
    ) -> None:
        super().__init__()
        self.num_fields = schema.num_categorical
        self.num_numeric = schema.num_numeric
        if self.num_fields + self.num_numeric == 0:
            raise ValueError("The schema has no categorical or numeric features: nothing for a model to read")
        self.embedding = embedding(schema)
        if self.embedding.num_fields != self.num_fields:
            raise ValueError(
                f"The embedding covers {self.embedding.num_fields} fields but the schema has "
                f"{self.num_fields} categorical features; build the embedding from the same schema"
            )
        self.dim = self.embedding.dim
        self.flat_dim = aligned_width(self.num_fields * self.dim + self.num_numeric)
        self.num_tokens = self.num_fields + self.num_numeric
        self.numeric_embedding: NumericEmbedding | None = None
        if numeric_tokens and self.num_numeric > 0:
            self.numeric_embedding = NumericEmbedding(self.num_numeric, self.dim)
        self._numeric_tokens = numeric_tokens

    def embed(self, batch: Batch) -> Tensor:
        """Categorical field embeddings ``[B, F, D]``."""
        if batch.sparse.shape[1] != self.num_fields:
            raise ValueError(
                f"Batch.sparse has {batch.sparse.shape[1]} columns but the schema has {self.num_fields} "
                "categorical features; the data and the model must use the same schema"
            )
        return self.embedding(batch.sparse)

    def numeric(self, batch: Batch) -> Tensor:
        """Numeric features ``[B, Dn]``."""
        if batch.dense.shape[1] != self.num_numeric:
            raise ValueError(
                f"Batch.dense has {batch.dense.shape[1]} columns but the schema has {self.num_numeric} "
                "numeric features; the data and the model must use the same schema"
            )
        return batch.dense

    def flatten(self, embedded: Tensor, dense: Tensor) -> Tensor:
        """``[B, F, D]`` and ``[B, Dn]`` -> ``[B, flat_dim]`` (``F·D + Dn`` plus zero padding)."""
        parts = [embedded.flatten(1), dense]
        pad = self.flat_dim - self.num_fields * self.dim - self.num_numeric
        if pad:
            parts.append(dense.new_zeros(dense.shape[0], pad))  # GEMM-friendly width, see aligned_width
        return torch.cat(parts, dim=1)

    def tokens(self, embedded: Tensor, dense: Tensor) -> Tensor:
        """``[B, F, D]`` and ``[B, Dn]`` -> ``[B, F + Dn, D]`` (categorical tokens first)."""
        if not self._numeric_tokens:
            raise RuntimeError("FeatureEncoder.tokens needs the encoder built with numeric_tokens=True")
        if self.numeric_embedding is None:
            return embedded
        return torch.cat([embedded, self.numeric_embedding(dense)], dim=1)

    def forward(self, batch: Batch) -> Tensor:
        """Flat input ``[B, flat_dim]``."""
        return self.flatten(self.embed(batch), self.numeric(batch))
