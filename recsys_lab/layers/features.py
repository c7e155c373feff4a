"""The input encoder every model shares: categorical embeddings, numeric features, and their
flat or token views.

B = batch size, F = categorical fields, M = multi-valued fields, L = ids per multi-valued field,
Dn = numeric features, D = embedding width.
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


class MultiValuedEmbedding(nn.Module):
    """Pooled embeddings of multi-valued fields (tags, categories, ...): ``[B, M, L]`` -> ``[B, M, D]``.

    The tables come from the model's own embedding factory, built on the multi-valued fields as if
    they were categorical (:meth:`~recsys_lab.data.schema.Schema.multi_valued_as_categorical`), so
    they are embedding parameters of the same type (full, hashed, ...) and train with the sparse
    optimiser. Each field's ids are mean- or sum-pooled over its non-padding positions (a bag of
    embeddings); a sample always has at least one id per field (1 = missing for an empty set).

    Args:
        schema: the dataset schema (at least one multi-valued feature).
        embedding: factory ``schema -> FieldEmbedding``.
        pooling: ``mean`` or ``sum``.
    """

    def __init__(self, schema: Schema, embedding: EmbeddingFactory, pooling: str = "mean") -> None:
        super().__init__()
        if not schema.multi_valued:
            raise ValueError("MultiValuedEmbedding needs multi-valued features in the schema")
        if pooling not in ("mean", "sum"):
            raise ValueError(f"multi-valued pooling must be 'mean' or 'sum', got {pooling!r}")
        self.embedding = embedding(schema.multi_valued_as_categorical())
        self.num_fields = schema.num_multi_valued
        self.dim = self.embedding.dim
        self.pooling = pooling

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[B, M, L]`` (-1 = padding) -> ``[B, M, D]``."""
        if ids.dim() != 3 or ids.shape[1] != self.num_fields:
            raise ValueError(
                f"Batch.multi must be [B, {self.num_fields}, L] (the schema's multi-valued fields), got "
                f"{tuple(ids.shape)}; the data and the model must use the same schema"
            )
        b, m, length = ids.shape
        mask = (ids >= 0).to(self.embedding_dtype())  # [B, M, L]
        # One row of M field ids per list position: [B, M, L] -> [B·L, M] -> [B·L, M, D].
        rows = ids.clamp(min=0).transpose(1, 2).reshape(b * length, m)
        e = self.embedding(rows).view(b, length, m, self.dim).transpose(1, 2)  # [B, M, L, D]
        pooled = (e * mask.unsqueeze(-1)).sum(2)  # [B, M, D]
        if self.pooling == "mean":
            pooled = pooled / mask.sum(2).clamp(min=1).unsqueeze(-1)
        return pooled

    def embedding_dtype(self) -> torch.dtype:
        return next(self.embedding.parameters()).dtype


class FeatureEncoder(nn.Module):
    """Builds the model's embedding from the schema and exposes the inputs in the shapes models use.

    - :meth:`embed`: categorical field embeddings ``[B, F, D]``, followed by the pooled
      embeddings of the multi-valued fields when the schema has any (:class:`MultiValuedEmbedding`;
      then F counts them too);
    - :meth:`numeric`: numeric features ``[B, Dn]``;
    - :meth:`forward` / :meth:`flatten`: flat concat ``[B, F·D + Dn]`` (MLP-style models);
    - :meth:`tokens`: ``[B, F + Dn, D]`` with one :class:`NumericEmbedding` token per numeric
      feature (only when built with ``numeric_tokens=True``).

    Args:
        schema: the dataset schema.
        embedding: factory ``schema -> FieldEmbedding`` (the ``embedding`` config group).
        numeric_tokens: build a :class:`NumericEmbedding` for :meth:`tokens`.

    Attributes:
        num_fields: F (categorical plus multi-valued fields). num_numeric: Dn. dim: D. num_tokens: F + Dn.
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
        self.num_categorical = schema.num_categorical
        self.num_fields = schema.num_categorical + schema.num_multi_valued
        self.num_numeric = schema.num_numeric
        if self.num_fields + self.num_numeric == 0:
            raise ValueError("The schema has no categorical or numeric features: nothing for a model to read")
        self.embedding = embedding(schema)
        if self.embedding.num_fields != self.num_categorical:
            raise ValueError(
                f"The embedding covers {self.embedding.num_fields} fields but the schema has "
                f"{self.num_categorical} categorical features; build the embedding from the same schema"
            )
        self.dim = self.embedding.dim
        self.multi_valued: MultiValuedEmbedding | None = (
            MultiValuedEmbedding(schema, embedding) if schema.multi_valued else None
        )
        self.flat_dim = aligned_width(self.num_fields * self.dim + self.num_numeric)
        self.num_tokens = self.num_fields + self.num_numeric
        self.numeric_embedding: NumericEmbedding | None = None
        if numeric_tokens and self.num_numeric > 0:
            self.numeric_embedding = NumericEmbedding(self.num_numeric, self.dim)
        self._numeric_tokens = numeric_tokens

    def embed(self, batch: Batch) -> Tensor:
        """Field embeddings ``[B, F, D]``: categorical fields, then pooled multi-valued fields."""
        if batch.sparse.shape[1] != self.num_categorical:
            raise ValueError(
                f"Batch.sparse has {batch.sparse.shape[1]} columns but the schema has {self.num_categorical} "
                "categorical features; the data and the model must use the same schema"
            )
        embedded = self.embedding(batch.sparse)  # [B, Fc, D]
        if self.multi_valued is None:
            return embedded
        if batch.multi is None:
            raise ValueError(
                "The schema has multi-valued features but the batch has no Batch.multi; the data and the "
                "model must use the same schema"
            )
        return torch.cat([embedded, self.multi_valued(batch.multi)], dim=1)  # [B, Fc + M, D]

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
