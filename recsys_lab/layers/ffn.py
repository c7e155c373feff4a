"""Per-token feed-forward networks: each token position has its own weights (RankMixer's PFFN).

Shapes: tokens ``[B, T, D]`` (B = batch, T = tokens, D = token width, H = hidden width).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_lab.layers.mlp import check_choice

FFNKind = Literal["swiglu", "gelu"]


def _per_token_weight(tokens: int, fan_in: int, fan_out: int) -> nn.Parameter:
    """``[T, fan_in, fan_out]`` initialised like ``nn.Linear`` (uniform ±1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(tokens, fan_in, fan_out).uniform_(-bound, bound))


class PerTokenFFN(nn.Module):
    """A feed-forward network per token position, computed for all positions in one einsum.

    - ``"swiglu"``: ``y_t = (SiLU(x_t W1_t) ⊙ (x_t W3_t)) W2_t`` (no biases);
    - ``"gelu"``: ``y_t = GELU(x_t W1_t + b1_t) W2_t + b2_t``.

    ``[B, T, D]`` -> ``[B, T, D]``.

    Args:
        num_tokens: T (each position gets its own weights).
        dim: D.
        hidden: H, the hidden width of each token's FFN.
        kind: ``"swiglu"`` or ``"gelu"``.
    """

    def __init__(self, num_tokens: int, dim: int, hidden: int, kind: FFNKind = "swiglu") -> None:
        super().__init__()
        check_choice("ffn kind", kind, get_args(FFNKind))
        if min(num_tokens, dim, hidden) < 1:
            raise ValueError(
                f"PerTokenFFN needs num_tokens, dim and hidden >= 1, got {num_tokens}, {dim}, {hidden}"
            )
        self.kind = kind
        self.num_tokens, self.dim, self.hidden = num_tokens, dim, hidden
        self.w1 = _per_token_weight(num_tokens, dim, hidden)  # [T, D, H]
        self.w2 = _per_token_weight(num_tokens, hidden, dim)  # [T, H, D]
        self.w3: nn.Parameter | None = None
        self.b1: nn.Parameter | None = None
        self.b2: nn.Parameter | None = None
        if kind == "swiglu":
            self.w3 = _per_token_weight(num_tokens, dim, hidden)  # [T, D, H]
        else:
            self.b1 = nn.Parameter(torch.zeros(num_tokens, hidden))
            self.b2 = nn.Parameter(torch.zeros(num_tokens, dim))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, T, D]`` -> ``[B, T, D]``."""
        if x.shape[1:] != (self.num_tokens, self.dim):
            raise ValueError(f"PerTokenFFN expects [B, {self.num_tokens}, {self.dim}], got {list(x.shape)}")
        h = torch.einsum("btd,tdh->bth", x, self.w1)  # [B, T, H]
        if self.w3 is not None:
            h = F.silu(h) * torch.einsum("btd,tdh->bth", x, self.w3)
        else:
            h = F.gelu(h + self.b1)
        y = torch.einsum("bth,thd->btd", h, self.w2)  # [B, T, D]
        return y if self.b2 is None else y + self.b2

    def flops_per_example(self) -> int:
        mats = 3 if self.kind == "swiglu" else 2
        return mats * 2 * self.num_tokens * self.dim * self.hidden
