"""Normalisation and residual wrappers of the token-mixer blocks: RMSNorm, post-norm, SiameseNorm.

A residual wrapper runs one sublayer ``f`` (a token mixer or a per-token FFN) on a residual
*state*. All wrappers share the interface ``begin(x) -> state``, ``step(state, f) -> state``,
``end(state) -> x``, so a block stack can switch between them by config (ablation).

Shapes: tokens ``[B, T, D]`` (B = batch, T = tokens, D = token width).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from recsys_lab.layers.mlp import check_choice

NormKind = Literal["siamese", "post"]
Sublayer = Callable[[Tensor], Tensor]
State = tuple[Tensor, Tensor]


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x²) + eps) · g`` over the last dimension. ``[..., D]`` -> ``[..., D]``."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"RMSNorm dim must be >= 1, got {dim}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class PostNorm(nn.Module):
    """Post-norm residual (as in RankMixer): ``x <- RMSNorm(x + f(x))``.

    The state is ``(x, x)``; the second slot is unused (kept so every wrapper has one interface).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)

    def begin(self, x: Tensor) -> State:
        return x, x

    def step(self, state: State, f: Sublayer) -> State:
        x = self.norm(state[0] + f(state[0]))
        return x, x

    def end(self, state: State) -> Tensor:
        return state[0]


class SiameseNorm(nn.Module):
    """Two coupled residual streams: ``a`` (pre-norm, un-normalised) and ``b`` (post-norm).

    Per sublayer ``f``::

        u = RMSNorm_in(a) + b        # the sublayer reads both streams
        o = f(u)
        a <- a + o                   # pre-norm stream: identity path, stable gradients
        b <- RMSNorm_out(b + o)      # post-norm stream: bounded activations

    ``begin(x) = (x, RMSNorm_out(x))`` and ``end = RMSNorm_in(a) + b`` (the input of the next
    sublayer). **Decision** (our reading of "two coupled residual streams with RMSNorm"): see
    docs/mixers.md.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_in = RMSNorm(dim)
        self.norm_out = RMSNorm(dim)

    def begin(self, x: Tensor) -> State:
        return x, self.norm_out(x)

    def step(self, state: State, f: Sublayer) -> State:
        a, b = state
        o = f(self.norm_in(a) + b)
        return a + o, self.norm_out(b + o)

    def end(self, state: State) -> Tensor:
        a, b = state
        return self.norm_in(a) + b


def residual_wrapper(kind: NormKind, dim: int) -> PostNorm | SiameseNorm:
    """A fresh residual wrapper of the given kind (``"siamese"`` or ``"post"``) for width ``dim``."""
    check_choice("norm", kind, get_args(NormKind))
    return SiameseNorm(dim) if kind == "siamese" else PostNorm(dim)
