"""Binary-code hash embedding "BH" (Yan et al., CIKM 2021, arXiv 2109.02471).

Each raw value — here the pair (field, field-local id) — is hashed to a 64-bit code by a bijective
mixer (splitmix64's finaliser), so no vocabulary is stored and ids never seen in training (or
beyond the schema's vocabulary) still embed. The lowest ``code_bits`` bits of the code are cut
into ``K = ceil(code_bits / block_bits)`` blocks of at most ``t = block_bits`` bits:

- ``succession``: block k holds the consecutive bits ``k·t .. k·t + t - 1``;
- ``skip``: block k holds the interleaved bits ``k, k + K, k + 2K, ...``.

Each block's value ``v_k ∈ [0, 2^t)`` indexes one table shared by every field; **Decision**
(METHODS.md): block k owns its own rows ``k·2^t + v_k`` (rows = K · 2^t), so two codes whose
blocks are a permutation of each other do not collide. The K block vectors are fused by ``sum``,
``mean`` or ``concat`` (each block then has width ``dim / K``).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FieldEmbedding

Strategy = Literal["succession", "skip"]
Fusion = Literal["sum", "mean", "concat"]

_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_C1 = _signed(0xBF58476D1CE4E5B9)
_C2 = _signed(0x94D049BB133111EB)
_GOLDEN = _signed(0x9E3779B97F4A7C15)


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """Bijective 64-bit mixer on int64 ``[...]`` (wrapping arithmetic), as in splitmix64."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _C1
    z = (z ^ _shr(z, 27)) * _C2
    return z ^ _shr(z, 31)


def block_positions(code_bits: int, block_bits: int, strategy: Strategy) -> Tensor:
    """int64 ``[K, t]``: the code bit at position i of block k (-1 where a block is shorter).

    Bit i of block k is the i-th least significant bit of the block's value."""
    k = math.ceil(code_bits / block_bits)
    pos = torch.full((k, block_bits), -1, dtype=torch.long)
    for bit in range(code_bits):
        if strategy == "succession":
            blk, i = divmod(bit, block_bits)
        else:  # skip: interleaved
            i, blk = divmod(bit, k)
        pos[blk, i] = bit
    return pos


class BinaryHashEmbedding(FieldEmbedding):
    """BH: hash → binary code → blocks of t bits → one table row per (block, value) → fuse.

    ``[B, F]`` ids -> ``[B, F, D]``. Table: ``[K · 2^t, D]`` (sum/mean) or ``[K · 2^t, D / K]``
    (concat), shared by all fields; ``K = ceil(code_bits / block_bits)``.

    Args:
        schema: the dataset schema (only the number of categorical fields is used: no vocabulary).
        dim: D, the output width.
        block_bits: t, bits per block (1..20).
        code_bits: n, how many low bits of the 64-bit hash form the code (t..64).
        strategy: ``succession`` (consecutive bits per block) or ``skip`` (interleaved).
        fusion: ``sum``, ``mean`` or ``concat`` of the K block vectors.
        seed: salt of the hash (different seeds give independent codes).
        sparse_grad: emit sparse table gradients (for SparseAdam / Adagrad).
        init_std: normal initialisation std of the table (divided by sqrt(K) for sum).
    """

    def __init__(
        self,
        schema: Schema,
        dim: int = 16,
        block_bits: int = 4,
        code_bits: int = 64,
        strategy: Strategy = "succession",
        fusion: Fusion = "sum",
        seed: int = 0,
        sparse_grad: bool = True,
        init_std: float = 1e-2,
    ) -> None:
        super().__init__()
        if strategy not in get_args(Strategy):
            raise ValueError(f"binary_hash strategy must be one of {get_args(Strategy)}, got {strategy!r}")
        if fusion not in get_args(Fusion):
            raise ValueError(f"binary_hash fusion must be one of {get_args(Fusion)}, got {fusion!r}")
        if not 1 <= block_bits <= 20:
            raise ValueError(
                f"binary_hash block_bits must be in 1..20 (table rows = blocks·2^t), got {block_bits}"
            )
        if not block_bits <= code_bits <= 64:
            raise ValueError(f"binary_hash code_bits must be in block_bits..64, got {code_bits}")
        if dim < 1:
            raise ValueError(f"embedding dim must be >= 1, got {dim}")
        self.num_fields = schema.num_categorical
        self.dim = dim
        self.block_bits = block_bits
        self.code_bits = code_bits
        self.strategy = strategy
        self.fusion = fusion
        self.seed = seed
        self.num_blocks = math.ceil(code_bits / block_bits)
        if fusion == "concat" and dim % self.num_blocks:
            raise ValueError(
                f"binary_hash fusion=concat needs dim divisible by the number of blocks "
                f"ceil({code_bits}/{block_bits}) = {self.num_blocks}; got dim={dim}. Change dim, block_bits "
                "or code_bits, or use fusion=sum"
            )
        width = dim // self.num_blocks if fusion == "concat" else dim
        pos = block_positions(code_bits, block_bits, strategy)  # [K, t]
        self.register_buffer("positions", pos.clamp(min=0), persistent=False)
        self.register_buffer("position_valid", pos >= 0, persistent=False)
        self.register_buffer(
            "block_offsets", torch.arange(self.num_blocks, dtype=torch.long) << block_bits, persistent=False
        )
        self.table = nn.Embedding(self.num_blocks << block_bits, width, sparse=sparse_grad)
        std = init_std / math.sqrt(self.num_blocks) if fusion == "sum" else init_std
        nn.init.normal_(self.table.weight, std=std)

    # -- codes and blocks ----------------------------------------------------------------------
    def codes(self, ids: Tensor) -> Tensor:
        """int64 ``[B, F]`` field-local ids -> int64 ``[B, F]`` codes (low ``code_bits`` of the hash)."""
        field = torch.arange(ids.shape[-1], device=ids.device, dtype=torch.long)
        raw = ((field + 1) << 40) + ids + (self.seed << 52)  # one distinct raw value per (field, id)
        h = splitmix64(raw)
        return h if self.code_bits == 64 else h & ((1 << self.code_bits) - 1)

    def blocks(self, codes: Tensor) -> Tensor:
        """int64 ``[...]`` codes -> int64 ``[..., K]`` block values in ``[0, 2^t)``."""
        bits = (codes.unsqueeze(-1).unsqueeze(-1) >> self.positions) & 1  # [..., K, t]
        bits = bits * self.position_valid
        weights = 1 << torch.arange(self.block_bits, device=codes.device, dtype=torch.long)  # [t]
        return (bits * weights).sum(-1)  # [..., K]

    def embed_codes(self, codes: Tensor) -> Tensor:
        """int64 ``[B, F]`` codes -> ``[B, F, D]``."""
        rows = self.blocks(codes) + self.block_offsets  # [B, F, K], per-block offsets
        vectors = self.table(rows)  # [B, F, K, width]
        if self.fusion == "sum":
            return vectors.sum(-2)
        if self.fusion == "mean":
            return vectors.mean(-2)
        return vectors.flatten(-2)  # concat: [B, F, K·width] = [B, F, D]

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[B, F]`` -> float ``[B, F, D]``. Any id >= 0 embeds (no vocabulary)."""
        return self.embed_codes(self.codes(ids))

    def table_ratio(self, schema: Schema) -> float:
        """Rows of a full table for ``schema`` divided by this table's rows (·width ratio for concat)."""
        full = sum(schema.vocab_sizes) * self.dim
        return full / self.table.weight.numel()
