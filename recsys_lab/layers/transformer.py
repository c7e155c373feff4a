"""A small pre-norm transformer block over padded token sequences with an explicit boolean mask.

The mask says, per sample, which key each query token may read (``True`` = attend), so one block
serves causal user models, block masks of packed users and query tokens that are hidden from each
other (LUM's knowledge querying). Attention is ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TransformerBlock(nn.Module):
    """``x + MHA(LN(x), mask)`` then ``x + FFN(LN(x))`` (GELU FFN of width ``ffn_mult · dim``).

    Args:
        dim: token width D (divisible by ``num_heads``).
        num_heads: attention heads H.
        ffn_mult: FFN hidden width as a multiple of D.
        dropout: dropout on the attention and FFN outputs.
    """

    def __init__(self, dim: int, num_heads: int, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(
                f"TransformerBlock: dim={dim} must be a positive multiple of num_heads={num_heads}"
            )
        if ffn_mult < 1:
            raise ValueError(f"TransformerBlock: ffn_mult={ffn_mult} must be >= 1")
        self.dim, self.num_heads, self.ffn_mult = dim, num_heads, ffn_mult
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``[B, T, D]``, ``mask`` bool ``[B, T, T]`` (query row, key column; every row must
        allow at least one key) -> ``[B, T, D]``."""
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)  # 3 × [B, T, D]
        # [B, T, D] -> [B, H, T, D/H]
        q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])  # [B, H, T, D/H]
        a = a.transpose(1, 2).reshape(b, t, d)  # [B, T, D]
        x = x + self.dropout(self.out(a))
        return x + self.dropout(self.ffn(self.norm2(x)))

    def flops(self, tokens: int, keys: int | None = None) -> int:
        """Forward matmul FLOPs of ``tokens`` query tokens each reading ``keys`` keys (default all)."""
        keys = tokens if keys is None else keys
        d = self.dim
        dense = 2 * tokens * d * (3 * d + d + 2 * self.ffn_mult * d)  # qkv, out, FFN
        attention = 2 * 2 * tokens * keys * d  # QKᵀ and AV
        return dense + attention
