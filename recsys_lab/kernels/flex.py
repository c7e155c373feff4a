"""FlexAttention paths: the packed batch as one sequence of N tokens with a block mask.

CamA is a masked softmax, which is what FlexAttention computes: the ``mask_mod`` encodes the
segment (document) mask, the sink, the candidate rule, timestamp causality and the per-channel
action bit; ``create_block_mask`` turns it into a block-sparse mask so fully masked 128×128 blocks
are skipped. On CUDA the call goes through ``torch.compile(flex_attention)`` (the fused kernel,
forward and backward); on CPU eager FlexAttention runs, which materialises the scores and has no
backward in torch 2.13 (a clear ``NotImplementedError`` from torch when gradients are needed).

HSTU's pointwise SiLU weights are not a softmax, so FlexAttention cannot express them:
``hstu_attention_flex`` raises ``NotImplementedError``.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor


def hstu_attention_flex(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    num_candidates: Tensor,
    pos_bias: Tensor,
    time_bias: Tensor,
    scale: float,
) -> Tensor:
    """Not available: FlexAttention always normalises with a softmax; HSTU has none."""
    raise NotImplementedError(
        "hstu_attention: kernel=flex is not available (FlexAttention always applies a softmax, HSTU "
        "uses pointwise SiLU weights); use kernel=reference or kernel=triton"
    )


def cama_block_mask(
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    num_heads: int,
    num_channels: int,
):
    """The CamA ``BlockMask`` over the packed ``N × N`` token grid (stores only block indices)."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = timestamps.numel()
    device = timestamps.device
    lengths = offsets[1:] - offsets[:-1]
    seg = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)  # [N]
    start = offsets[:-1][seg]  # [N] first row of each token's segment
    hist_end = offsets[1:][seg] - num_candidates[seg]  # [N] first candidate row of the segment
    bits = (actions << 1) | 1  # bit 0: content channel; bit c: action c - 1
    per = num_heads // num_channels

    def mask_mod(b, h, q_idx, kv_idx):
        same = seg[q_idx] == seg[kv_idx]
        sink = kv_idx == start[q_idx]
        chan = ((bits[kv_idx] >> (h // per)) & 1) == 1
        seen = (kv_idx < hist_end[kv_idx]) & (timestamps[kv_idx] < timestamps[q_idx]) & chan
        return same & (sink | seen)

    # on CUDA the mask is built by a compiled kernel, block by block (no dense N × N bool tensor)
    return create_block_mask(
        mask_mod, B=None, H=num_heads, Q_LEN=n, KV_LEN=n, device=device, _compile=device.type == "cuda"
    )


def cama_attention_flex(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    num_channels: int,
    scale: float,
) -> Tensor:
    """CamA through ``flex_attention``. ``q, k``: ``[N, H, D]``, ``v``: ``[N, H, Dv]`` → ``[N, H, Dv]``."""
    n, h, _ = q.shape
    check_flex_dims(q, v)
    if n == 0:
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum())
    block_mask = cama_block_mask(offsets, timestamps, actions, num_candidates, h, num_channels)
    qh, kh, vh = (t.transpose(0, 1)[None] for t in (q, k, v))  # [1, H, N, D]
    if q.device.type == "cuda":
        out = _compiled_flex()(qh, kh, vh, block_mask=block_mask, scale=scale)
    else:  # eager CPU FlexAttention: forward only, dense scores (torch says so in its warning)
        from torch.nn.attention.flex_attention import flex_attention

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            out = flex_attention(qh, kh, vh, block_mask=block_mask, scale=scale)
    return out[0].transpose(0, 1)  # [N, H, Dv]


def check_flex_dims(q: Tensor, v: Tensor) -> None:
    """The compiled CUDA FlexAttention kernel needs head dims of at least 16 (``tl.dot``)."""
    if q.device.type == "cuda" and min(q.shape[-1], v.shape[-1]) < 16:
        raise ValueError(
            f"cama_attention: kernel=flex on CUDA needs head dims >= 16 (FlexAttention's compiled "
            f"kernel), got q/k {q.shape[-1]} and v {v.shape[-1]}; widen the heads (model.head_dim) or "
            "use kernel=triton / kernel=reference"
        )


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)
