"""Jagged attention blocks over packed token sequences: the HSTU layer, the CamA block of GRAB, and
a top-k mixture-of-experts FFN. The attention itself is the kernel op of
:mod:`recsys_lab.kernels` (``kernel=reference`` is plain PyTorch, one segment at a time;
``triton`` / ``flex`` when available).

``kernel=padded`` (``Kernel.PADDED``) batches the same maths over users on score blocks padded to
the longest segment of the batch: what makes CPU training fast enough (the jagged reference loops
over users in Python).

N = tokens of the packed batch, B = segments, L = longest segment, d = model width, H = heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_lab.kernels import Kernel, as_kernel, cama_attention, hstu_attention
from recsys_lab.layers.sequence import PackedSequence


class HSTULayer(nn.Module):
    """One HSTU layer (Zhai et al. 2024) on a packed sequence::

        U, V, Q, K = split(SiLU(Linear(LN(x))))
        A_h[i, j]  = SiLU(scale · q_i·k_j + pos_bias[h, min(i-j, P-1)] + time_bias[h, tb(ts_i-ts_j)]) / L
        out        = x + Linear(LN(A V) ⊙ U)

    with A masked causally within each segment (candidates see the history and themselves only),
    ``tb(d) = min(floor(log2(1 + d)), T - 1)``. ``[N, d] -> [N, d]``.

    Args:
        dim: d.
        num_heads: H.
        qk_dim: per-head width of Q and K.
        v_dim: per-head width of V and U.
        num_positions: P, relative-position buckets.
        time_buckets: T, relative-time buckets.
        dropout: dropout on the attention output before the output projection.
        kernel: attention implementation (``reference``, ``triton``, ``flex``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_dim: int,
        v_dim: int,
        num_positions: int,
        time_buckets: int,
        dropout: float,
        kernel: str,
    ) -> None:
        super().__init__()
        if min(dim, num_heads, qk_dim, v_dim, num_positions, time_buckets) < 1:
            raise ValueError(
                "HSTU layer sizes must be >= 1, got "
                f"dim={dim}, num_heads={num_heads}, qk_dim={qk_dim}, v_dim={v_dim}, "
                f"num_positions={num_positions}, time_buckets={time_buckets}"
            )
        self.kernel = as_kernel(kernel)
        self.dim, self.num_heads, self.qk_dim, self.v_dim = dim, num_heads, qk_dim, v_dim
        self.scale = qk_dim**-0.5
        self.norm_in = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, num_heads * (2 * v_dim + 2 * qk_dim))
        self.pos_bias = nn.Parameter(torch.zeros(num_heads, num_positions))
        self.time_bias = nn.Parameter(torch.zeros(num_heads, time_buckets))
        self.norm_attn = nn.LayerNorm(num_heads * v_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(num_heads * v_dim, dim)

    def forward(self, x: Tensor, packed: PackedSequence) -> Tensor:
        """``x`` ``[N, d]`` -> ``[N, d]``."""
        n, h = x.shape[0], self.num_heads
        uvqk = F.silu(self.uvqk(self.norm_in(x)))  # [N, H·(2Dv + 2Dqk)]
        u, v, q, k = uvqk.split([h * self.v_dim, h * self.v_dim, h * self.qk_dim, h * self.qk_dim], dim=1)
        args = (
            q.reshape(n, h, self.qk_dim),  # [N, H, Dqk]
            k.reshape(n, h, self.qk_dim),
            v.reshape(n, h, self.v_dim),  # [N, H, Dv]
            packed.offsets,
            packed.timestamps,
            packed.num_candidates,
            self.pos_bias,
            self.time_bias,
        )
        attn = hstu_attention(*args, scale=self.scale, kernel=self.kernel)
        attn = attn.reshape(n, h * self.v_dim)  # [N, H·Dv]
        return x + self.out(self.dropout(self.norm_attn(attn) * u))

    def flops_per_token(self, mean_length: float) -> int:
        """Matmul FLOPs per token in a segment of ``mean_length`` tokens (attention counted as the
        dense ``L × L`` products of q·k and A·v)."""
        proj = 2 * self.dim * self.uvqk.out_features + 2 * self.out.in_features * self.dim
        attn = 2 * mean_length * self.num_heads * (self.qk_dim + self.v_dim)
        return int(proj + attn)


class FeedForward(nn.Module):
    """``Linear(d, h) -> GELU -> Linear(h, d)``; ``[..., d] -> [..., d]``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"FeedForward sizes must be >= 1, got dim={dim}, hidden={hidden}")
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))

    def flops_per_token(self) -> int:
        return 4 * self.up.in_features * self.up.out_features


class TopKMoE(nn.Module):
    """Top-k mixture of expert FFNs: a linear router scores E experts per token, the k best are
    run and mixed with the softmax of their router scores. ``[N, d] -> [N, d]``.

    Args:
        dim: d. hidden: each expert's hidden width. num_experts: E. top_k: k (1 <= k <= E).
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        if num_experts < 1 or not 1 <= top_k <= num_experts:
            raise ValueError(
                f"TopKMoE needs num_experts >= 1 and 1 <= top_k <= num_experts, got {num_experts}, {top_k}"
            )
        self.top_k = top_k
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, hidden) for _ in range(num_experts))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, d]`` -> ``[N, d]``."""
        scores, chosen = self.router(x).topk(self.top_k, dim=-1)  # [N, k]
        weights = torch.softmax(scores, dim=-1)  # [N, k]
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(chosen == e, as_tuple=True)  # tokens routed to expert e
            if token.numel() == 0:
                continue
            y = expert(x[token]) * weights[token, slot, None]
            out = out.index_add(0, token, y)
        return out

    def flops_per_token(self) -> int:
        return (
            2 * self.router.in_features * self.router.out_features
            + self.top_k * self.experts[0].flops_per_token()
        )


class CamABlock(nn.Module):
    """A pre-norm transformer block with CamA attention (GRAB)::

        h = LN(x);  q = W_q h;  k = W_k h + A_k[a];  v = W_v h + A_v[a]
        x = x + W_o CamA(q, k, v);  x = x + FFN(LN(x))

    Heads are split into ``num_channels`` groups: channel 0 attends to every earlier token of the
    segment, channel c >= 1 only to earlier tokens with action bit c - 1 (see
    :func:`recsys_lab.kernels.cama_attention`); every row sees the segment's sink. **The action
    enters keys and values only** (``A_k``, ``A_v``: a learned per-layer embedding of each token's
    action code): a token's own residual stream never holds its own action, and with strict
    ``ts_j < ts_i`` visibility no row sees its own action at any depth, so every event's click can
    be a training target.

    Args:
        dim: d. num_heads: H (a multiple of num_channels). head_dim: per-head width.
        num_channels: C. num_action_codes: size of the action-code vocabulary.
        ffn_hidden: FFN hidden width. num_experts: 0 = dense FFN, else a top-k MoE FFN.
        top_k: experts per token (MoE only). dropout: on the attention and FFN outputs.
        kernel: attention implementation.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        num_channels: int,
        num_action_codes: int,
        ffn_hidden: int,
        num_experts: int,
        top_k: int,
        dropout: float,
        kernel: str,
    ) -> None:
        super().__init__()
        if min(dim, num_heads, head_dim, num_channels, num_action_codes) < 1:
            raise ValueError(
                f"CamA block sizes must be >= 1, got dim={dim}, num_heads={num_heads}, head_dim={head_dim}, "
                f"num_channels={num_channels}"
            )
        if num_heads % num_channels != 0:
            raise ValueError(
                f"CamA needs num_heads divisible by the number of channels: num_heads={num_heads}, "
                f"channels={num_channels} (1 content + one per action type). Set model.num_heads to a "
                f"multiple of {num_channels}."
            )
        self.kernel = as_kernel(kernel)
        self.num_heads, self.head_dim, self.num_channels = num_heads, head_dim, num_channels
        width = num_heads * head_dim
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * width)
        self.action_k = nn.Embedding(num_action_codes, width)
        self.action_v = nn.Embedding(num_action_codes, width)
        nn.init.normal_(self.action_k.weight, std=0.02)
        nn.init.normal_(self.action_v.weight, std=0.02)
        self.out = nn.Linear(width, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn: nn.Module = (
            FeedForward(dim, ffn_hidden) if num_experts == 0 else TopKMoE(dim, ffn_hidden, num_experts, top_k)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, packed: PackedSequence, action_codes: Tensor) -> Tensor:
        """``x`` ``[N, d]``, ``action_codes`` int64 ``[N]`` -> ``[N, d]``."""
        n, h, dh = x.shape[0], self.num_heads, self.head_dim
        q, k, v = self.qkv(self.norm_attn(x)).chunk(3, dim=1)  # 3 × [N, H·Dh]
        k = k + self.action_k(action_codes)
        v = v + self.action_v(action_codes)
        args = (
            q.reshape(n, h, dh),  # [N, H, Dh]
            k.reshape(n, h, dh),
            v.reshape(n, h, dh),
            packed.offsets,
            packed.timestamps,
            packed.actions,
            packed.num_candidates,
        )
        attn = cama_attention(*args, num_channels=self.num_channels, scale=dh**-0.5, kernel=self.kernel)
        attn = attn.reshape(n, h * dh)  # [N, H·Dh]
        x = x + self.dropout(self.out(attn))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))

    def flops_per_token(self, mean_length: float) -> int:
        """Matmul FLOPs per token in a segment of ``mean_length`` tokens (dense ``L × L`` attention)."""
        width = self.num_heads * self.head_dim
        proj = 2 * self.qkv.in_features * 3 * width + 2 * width * self.out.out_features
        attn = 2 * mean_length * 2 * width
        return int(proj + attn + self.ffn.flops_per_token())


__all__ = [
    "CamABlock",
    "FeedForward",
    "HSTULayer",
    "Kernel",
    "TopKMoE",
]
