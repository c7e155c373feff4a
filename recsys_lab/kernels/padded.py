"""``Kernel.PADDED``: the attention ops batched over users on ``[B, H, L, L]`` score blocks.

The same maths as the jagged reference (``reference.py``), with every segment padded to the
longest one of the batch, so one batched matmul replaces the reference's Python loop over users.
It is what makes CPU training of the sequence models fast enough; memory is quadratic in the
longest segment. Tests check it against the reference, output and gradients.

N = tokens of the packed batch, B = segments, L = longest segment, H = heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.kernels.reference import time_bucket


def _padded_index(offsets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For jagged segments: ``(rows [B, L], mask [B, L], lengths [B], positions [L])``.

    ``rows[b, p]`` is the token row of position p of segment b (0 where ``mask`` is False).
    """
    lengths = offsets[1:] - offsets[:-1]  # [B]
    longest = int(lengths.max()) if lengths.numel() > 0 else 0
    pos = torch.arange(longest, device=offsets.device)  # [L]
    mask = pos[None, :] < lengths[:, None]  # [B, L]
    rows = torch.where(mask, offsets[:-1, None] + pos[None, :], torch.zeros_like(mask, dtype=torch.long))
    return rows, mask, lengths, pos


def _candidate_flags(mask: Tensor, lengths: Tensor, num_candidates: Tensor, pos: Tensor) -> Tensor:
    """bool ``[B, L]``: position p of segment b is one of its candidates."""
    return mask & (pos[None, :] >= (lengths - num_candidates)[:, None])


def hstu_attention_padded(
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
    """:func:`recsys_lab.kernels.hstu_attention` computed on padded ``[B, H, L, L]`` blocks.

    ``q, k`` ``[N, H, Dqk]``, ``v`` ``[N, H, Dv]`` -> ``[N, H, Dv]``.
    """
    rows, mask, lengths, pos = _padded_index(offsets)
    if rows.numel() == 0:
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + pos_bias.sum() + time_bias.sum())
    qp, kp, vp = (t[rows].transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
    scores = scale * (qp @ kp.transpose(-1, -2))  # [B, H, L, L]
    rel = (pos[:, None] - pos[None, :]).clamp(0, pos_bias.shape[1] - 1)  # [L, L]
    ts = timestamps[rows]  # [B, L]
    tb = time_bucket(ts[:, :, None] - ts[:, None, :], time_bias.shape[1])  # [B, L, L]
    a = scores + pos_bias[:, rel][None] + time_bias[:, tb].transpose(0, 1)  # [B, H, L, L]
    cand = _candidate_flags(mask, lengths, num_candidates, pos)  # [B, L]
    eye = torch.eye(rows.shape[1], dtype=torch.bool, device=q.device)
    vis = (pos[None, :] <= pos[:, None])[None] & mask[:, None, :] & mask[:, :, None]  # [B, L, L]
    vis = vis & (~cand[:, None, :] | eye[None])  # candidates are seen by themselves only
    w = torch.where(vis[:, None], F.silu(a), torch.zeros((), dtype=a.dtype, device=a.device))
    w = w / lengths.clamp(min=1).to(a.dtype)[:, None, None, None]
    out = (w @ vp).transpose(1, 2)  # [B, L, H, Dv]
    return out[mask]  # rows of the mask are the jagged token order


def cama_attention_padded(
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
    """:func:`recsys_lab.kernels.cama_attention` computed on padded ``[B, H, L, L]`` blocks.

    ``q, k`` ``[N, H, Dqk]``, ``v`` ``[N, H, Dv]`` -> ``[N, H, Dv]``.
    """
    rows, mask, lengths, pos = _padded_index(offsets)
    if rows.numel() == 0:
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum())
    h = q.shape[1]
    qp, kp, vp = (t[rows].transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
    scores = scale * (qp @ kp.transpose(-1, -2))  # [B, H, L, L]
    ts, act = timestamps[rows], actions[rows]  # [B, L]
    cand = _candidate_flags(mask, lengths, num_candidates, pos)
    earlier = (ts[:, None, :] < ts[:, :, None]) & (mask & ~cand)[:, None, :]  # [B, L(i), L(j)]
    bits = [torch.ones_like(mask)] + [((act >> (c - 1)) & 1).bool() for c in range(1, num_channels)]
    chan = torch.stack(bits, dim=1)  # [B, C, L] key j has channel c's action
    vis = earlier[:, None] & chan[:, :, None, :]  # [B, C, L, L]
    vis[..., 0] = True  # the sink (and a harmless key for padded rows)
    vis = vis.repeat_interleave(h // num_channels, dim=1)  # [B, H, L, L]
    p = torch.softmax(scores.masked_fill(~vis, float("-inf")), dim=-1)
    out = (p @ vp).transpose(1, 2)  # [B, L, H, Dv]
    return out[mask]
