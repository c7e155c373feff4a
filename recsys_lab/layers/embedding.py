"""Field embeddings: categorical ids ``[B, F]`` -> vectors ``[B, F, D]``.

The ``embedding`` config group chooses the table type (``full``, ``hashed``, later ``binary_hash``
and ``amtl``); every model takes it as a factory ``schema -> FieldEmbedding`` so any model can use
any table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from recsys_lab.data.schema import Schema


class FieldEmbedding(nn.Module):
    """Base class: embeds the categorical fields of a schema.

    Attributes:
        num_fields: F, the number of categorical fields.
        dim: D, the width of each field's output vector.
    """

    num_fields: int
    dim: int

    def num_stored_values(self) -> int:
        """Scalars stored for serving (the table size that matters for memory)."""
        return sum(p.numel() for p in self.parameters())

    def dense_parameters(self) -> list[nn.Parameter]:
        """Parameters of this module that are not embedding tables (e.g. AMTL's mask MLPs): they
        get dense gradients and the dense optimiser, and warm starts do not copy them. None here."""
        return []

    def fused_table_values(self) -> int:
        """Table values held outside ``parameters()`` and trained by their own optimiser (TorchRec
        tables sharded over ranks); counted as embedding parameters. None here."""
        return 0

    def shard(self, device: torch.device | None = None) -> None:
        """Split the tables over the ranks of the default process group (a no-op here; see
        :class:`~recsys_lab.layers.torchrec_embedding.TorchRecEmbedding`)."""


def _offsets(sizes: list[int]) -> Tensor:
    """int64 ``[F]``: the first row of each field in one concatenated table."""
    out = torch.zeros(len(sizes), dtype=torch.long)
    if sizes:
        out[1:] = torch.cumsum(torch.tensor(sizes[:-1], dtype=torch.long), 0)
    return out


class FullEmbedding(FieldEmbedding):
    """One row per (field, id): all fields share one table with per-field row offsets.

    Args:
        schema: the dataset schema (its categorical fields and vocabulary sizes).
        dim: D, the embedding width.
        sparse_grad: emit sparse gradients (use with a sparse optimiser such as SparseAdam or
            Adagrad); much faster for large tables because only the looked-up rows are touched.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(
        self, schema: Schema, dim: int = 16, sparse_grad: bool = True, init_std: float = 1e-2
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"embedding dim must be >= 1, got {dim}")
        sizes = self._rows_per_field(schema)
        self.num_fields = len(sizes)
        self.dim = dim
        self.rows_per_field = sizes
        self.register_buffer("field_offsets", _offsets(sizes), persistent=False)
        self.table = nn.Embedding(max(sum(sizes), 1), dim, sparse=sparse_grad)
        nn.init.normal_(self.table.weight, std=init_std)

    def _rows_per_field(self, schema: Schema) -> list[int]:
        return schema.vocab_sizes

    def rows(self, ids: Tensor) -> Tensor:
        """int64 ``[B, F]`` field-local ids -> int64 ``[B, F]`` rows of the shared table."""
        return ids + self.field_offsets

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[B, F]`` -> float ``[B, F, D]``."""
        return self.table(self.rows(ids))


class HashedEmbedding(FullEmbedding):
    """The hashing trick: field f's ids are hashed into ``ceil(vocab_f / compression)`` buckets
    (at least ``min_buckets``), so distinct ids may collide. Id 0 (missing) keeps bucket 0.

    Args:
        compression: vocabulary-to-buckets ratio (e.g. 10 = a table 10x smaller).
        min_buckets: lower bound on buckets per field.
    """

    _MULTIPLIER = 0x9E3779B1  # Knuth's multiplicative-hash constant

    def __init__(
        self,
        schema: Schema,
        dim: int = 16,
        compression: float = 10.0,
        min_buckets: int = 2,
        sparse_grad: bool = True,
        init_std: float = 1e-2,
    ) -> None:
        if compression < 1:
            raise ValueError(f"compression must be >= 1, got {compression}")
        if min_buckets < 2:
            raise ValueError(f"min_buckets must be >= 2 (bucket 0 is for missing ids), got {min_buckets}")
        self.compression = compression
        self.min_buckets = min_buckets
        super().__init__(schema, dim=dim, sparse_grad=sparse_grad, init_std=init_std)
        self.register_buffer("buckets", torch.tensor(self.rows_per_field, dtype=torch.long), persistent=False)

    def _rows_per_field(self, schema: Schema) -> list[int]:
        return [min(v, max(self.min_buckets, int(-(-v // self.compression)))) for v in schema.vocab_sizes]

    def rows(self, ids: Tensor) -> Tensor:
        # Non-zero ids map to buckets 1..n-1 of their field; 0 stays 0.
        hashed = (ids * self._MULTIPLIER) % (2**32) % (self.buckets - 1) + 1
        return torch.where(ids == 0, torch.zeros_like(ids), hashed) + self.field_offsets


EmbeddingFactory = Callable[[Schema], FieldEmbedding]
"""What the ``embedding`` config group instantiates to: schema -> embedding module."""
