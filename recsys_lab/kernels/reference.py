"""Plain PyTorch references of the jagged attention ops, one segment (user) at a time.

Each segment builds only its own ``[H, L, L]`` scores and mask, never the ``N × N`` of the whole
batch. These are the ground truth the Triton and Flex paths are tested against.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor


def time_bucket(dt: Tensor, num_buckets: int) -> Tensor:
    """``min(floor(log2(1 + max(dt, 0))), num_buckets - 1)``, exact on int64 ``dt`` (any shape)."""
    x = dt.clamp(min=0) + 1
    k = torch.floor(torch.log2(x.to(torch.float64))).to(torch.int64)
    one = torch.ones_like(k)
    k = k - ((one << k) > x).to(torch.int64)  # float rounding can overshoot by one ...
    k = k + ((one << (k + 1)) <= x).to(torch.int64)  # ... or undershoot by one
    return k.clamp(max=num_buckets - 1)


def hstu_visible(length: int, num_cand: int, device: torch.device | str = "cpu") -> Tensor:
    """HSTU mask of one segment, bool ``[L, L]``: ``j <= i``; a candidate sees history + itself."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    hist = length - num_cand
    return (j <= i) & ((j < hist) | (j == i))


def cama_visible(ts: Tensor, actions: Tensor, num_cand: int, num_channels: int) -> Tensor:
    """CamA masks of one segment, bool ``[C, L, L]`` (channel, query i, key j).

    ``j`` is the sink (index 0), or ``j`` is history (not a candidate), ``ts_j < ts_i`` and, for
    channel ``c >= 1``, key ``j`` has action bit ``c - 1``. The sink is visible to every row.
    """
    length = ts.shape[0]
    j = torch.arange(length, device=ts.device)
    hist = length - num_cand
    earlier = (ts[None, :] < ts[:, None]) & (j < hist)[None, :]  # [L, L]
    bits = [torch.ones_like(actions, dtype=torch.bool)]
    bits += [((actions >> (c - 1)) & 1).bool() for c in range(1, num_channels)]
    chan = torch.stack(bits)  # [C, L] key has the channel's action
    vis = earlier[None] & chan[:, None, :]
    vis[:, :, 0] = True  # the sink
    return vis


def _segments(offsets: Tensor) -> list[tuple[int, int]]:
    bounds = offsets.tolist()
    return list(itertools.pairwise(bounds))


def hstu_attention_reference(
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
    """HSTU pointwise attention. ``q, k``: ``[N, H, Dqk]``, ``v``: ``[N, H, Dv]`` → ``[N, H, Dv]``.

    ``o_i = Σ_j visible_ij · SiLU(scale·q_i·k_j + pos_bias[h, min(i-j, P-1)]
    + time_bias[h, tb(ts_i - ts_j)]) / L · v_j``; computed in (at least) float32, returned in q's dtype.
    """
    num_pos, num_time = pos_bias.shape[1], time_bias.shape[1]
    ct = torch.promote_types(q.dtype, torch.float32)  # compute dtype
    pieces = []
    for b, (s, e) in enumerate(_segments(offsets)):
        length = e - s
        if length == 0:
            continue
        qb, kb, vb = (t[s:e].to(ct).transpose(0, 1) for t in (q, k, v))  # [H, L, D]
        scores = scale * (qb @ kb.transpose(1, 2))  # [H, L, L]
        pos = torch.arange(length, device=q.device)
        rel = (pos[:, None] - pos[None, :]).clamp(0, num_pos - 1)  # [L, L]
        ts = timestamps[s:e]
        tb = time_bucket(ts[:, None] - ts[None, :], num_time)  # [L, L]
        a = scores + pos_bias.to(ct)[:, rel] + time_bias.to(ct)[:, tb]
        vis = hstu_visible(length, int(num_candidates[b]), q.device)
        w = torch.where(vis, F.silu(a), torch.zeros((), device=q.device)) / length
        pieces.append((w @ vb).transpose(0, 1))  # [L, H, Dv]
    if not pieces:
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + pos_bias.sum() + time_bias.sum())
    return torch.cat(pieces).to(q.dtype)


def cama_attention_reference(
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
    """CamA masked softmax attention. ``q, k``: ``[N, H, Dqk]``, ``v``: ``[N, H, Dv]`` → ``[N, H, Dv]``.

    Head ``h`` belongs to channel ``h // (H // num_channels)``; softmax over the channel's visible
    keys (see :func:`cama_visible`) of ``scale·q_i·k_j``. Float32 (or float64) maths, q's dtype out.
    """
    h = q.shape[1]
    per = h // num_channels
    ct = torch.promote_types(q.dtype, torch.float32)  # compute dtype
    pieces = []
    for b, (s, e) in enumerate(_segments(offsets)):
        if e == s:
            continue
        qb, kb, vb = (t[s:e].to(ct).transpose(0, 1) for t in (q, k, v))  # [H, L, D]
        scores = scale * (qb @ kb.transpose(1, 2))  # [H, L, L]
        vis = cama_visible(timestamps[s:e], actions[s:e], int(num_candidates[b]), num_channels)
        vis = vis.repeat_interleave(per, dim=0)  # [C, L, L] -> [H, L, L]
        p = torch.softmax(scores.masked_fill(~vis, float("-inf")), dim=-1)
        pieces.append((p @ vb).transpose(0, 1))  # [L, H, Dv]
    if not pieces:
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum())
    return torch.cat(pieces).to(q.dtype)
