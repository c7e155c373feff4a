"""Fused Triton kernels for CamA multi-channel masked softmax attention on jagged sequences.

Grid: one program per (query or key block of a segment, segment, head); head h is channel
``c = h // (H // C)``. Each key carries ``bits = (actions << 1) | 1``; key j is visible to a
channel-c query i when j is the sink (segment index 0), or j is history, ``ts_j < ts_i`` and bit c
of ``bits_j`` is set (bit 0 = content channel, always set).

Block sparsity (what is never visited):
- key blocks past ``min(query block end, history end)`` (timestamp causality implies j < i; the
  first block always runs, it holds the sink);
- for channels c >= 1, key blocks whose OR of ``bits`` lacks bit c (precomputed per key block,
  ``[num key blocks]`` int64, one pass over the N tokens); the first block is never skipped.
The same skips apply to the backward. The forward saves the logsumexp per row and head
(``[N, H]`` fp32); the backward recomputes probabilities from it (FlashAttention-2 style: a
dk/dv kernel over key blocks and a dq kernel over query blocks, no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from recsys_lab.kernels.triton_hstu import _load_rows, _max, _pad, _store_rows, _sum, block_sizes


@triton.jit
def _tile_visible(offs_m, offs_n, mask_m, length, hist, ts_i, ts_j, bits_j, c):
    """CamA mask of one ``[BM, BN]`` tile."""
    sink = offs_n == 0
    key_ok = (offs_n < hist) & (((bits_j >> c) & 1) != 0)
    vis = sink[None, :] | (key_ok[None, :] & (ts_j[None, :] < ts_i[:, None]))
    return vis & mask_m[:, None] & (offs_n < length)[None, :]


@triton.jit
def _cama_fwd(
    Q,
    K,
    V,
    Out,
    LSE,
    OFF,
    TS,
    BITS,
    NC,
    BLK_OFF,
    BLK_BITS,
    stride_qn,
    stride_qh,
    stride_kn,
    stride_kh,
    stride_vn,
    stride_vh,
    stride_on,
    stride_oh,
    stride_ln,
    scale,
    HEADS_PER_CHANNEL,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    start = tl.load(OFF + b)
    length = tl.load(OFF + b + 1) - start
    m0 = pid_m * BM
    if m0 >= length:
        return
    c = h // HEADS_PER_CHANNEL
    hist = length - tl.load(NC + b)
    blk_base = tl.load(BLK_OFF + b)
    offs_m = m0 + tl.arange(0, BM)
    mask_m = offs_m < length
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    rows_m = start + offs_m
    q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
    ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.full([BM], 0.0, tl.float32)
    acc = tl.full([BM, BDV], 0.0, tl.float32)
    hi = tl.maximum(tl.minimum(m0 + BM, hist), 1)  # the sink block always runs
    for n0 in range(0, hi, BN):
        blk_bits = tl.load(BLK_BITS + blk_base + n0 // BN)
        if (n0 == 0) | (((blk_bits >> c) & 1) != 0):
            offs_n = n0 + tl.arange(0, BN)
            mask_n = offs_n < length
            rows_n = start + offs_n
            k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
            v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
            ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
            bits_j = tl.load(BITS + rows_n, mask=mask_n, other=0)
            vis = _tile_visible(offs_m, offs_n, mask_m, length, hist, ts_i, ts_j, bits_j, c)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            s = tl.where(vis, s, float("-inf"))
            m_new = tl.maximum(m_i, _max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # padded rows see nothing
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + _sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
            m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    _store_rows(Out, rows_m, stride_on, h * stride_oh, offs_dv, DV, mask_m, out.to(Out.dtype.element_ty))
    tl.store(LSE + rows_m * stride_ln + h, m_i + tl.log(l_safe), mask=mask_m)


@triton.jit
def _cama_bwd_dq(
    Q,
    K,
    V,
    DO,
    DQ,
    LSE,
    DELTA,
    OFF,
    TS,
    BITS,
    NC,
    BLK_OFF,
    BLK_BITS,
    stride_qn,
    stride_qh,
    stride_kn,
    stride_kh,
    stride_vn,
    stride_vh,
    stride_don,
    stride_doh,
    stride_dqn,
    stride_dqh,
    stride_ln,
    scale,
    HEADS_PER_CHANNEL,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    start = tl.load(OFF + b)
    length = tl.load(OFF + b + 1) - start
    m0 = pid_m * BM
    if m0 >= length:
        return
    c = h // HEADS_PER_CHANNEL
    hist = length - tl.load(NC + b)
    blk_base = tl.load(BLK_OFF + b)
    offs_m = m0 + tl.arange(0, BM)
    mask_m = offs_m < length
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    rows_m = start + offs_m
    q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
    do = _load_rows(DO, rows_m, stride_don, h * stride_doh, offs_dv, DV, mask_m)
    ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
    lse = tl.load(LSE + rows_m * stride_ln + h, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + rows_m * stride_ln + h, mask=mask_m, other=0.0)
    dq = tl.full([BM, BD], 0.0, tl.float32)
    hi = tl.maximum(tl.minimum(m0 + BM, hist), 1)
    for n0 in range(0, hi, BN):
        blk_bits = tl.load(BLK_BITS + blk_base + n0 // BN)
        if (n0 == 0) | (((blk_bits >> c) & 1) != 0):
            offs_n = n0 + tl.arange(0, BN)
            mask_n = offs_n < length
            rows_n = start + offs_n
            k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
            v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
            ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
            bits_j = tl.load(BITS + rows_n, mask=mask_n, other=0)
            vis = _tile_visible(offs_m, offs_n, mask_m, length, hist, ts_i, ts_j, bits_j, c)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            p = tl.where(vis, tl.exp(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee")
    _store_rows(
        DQ, rows_m, stride_dqn, h * stride_dqh, offs_d, D, mask_m, (dq * scale).to(DQ.dtype.element_ty)
    )


@triton.jit
def _cama_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    DK,
    DV_,
    LSE,
    DELTA,
    OFF,
    TS,
    BITS,
    NC,
    BLK_OFF,
    BLK_BITS,
    stride_qn,
    stride_qh,
    stride_kn,
    stride_kh,
    stride_vn,
    stride_vh,
    stride_don,
    stride_doh,
    stride_dkn,
    stride_dkh,
    stride_dvn,
    stride_dvh,
    stride_ln,
    scale,
    HEADS_PER_CHANNEL,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    start = tl.load(OFF + b)
    length = tl.load(OFF + b + 1) - start
    n0 = pid_n * BN
    if n0 >= length:
        return
    c = h // HEADS_PER_CHANNEL
    hist = length - tl.load(NC + b)
    blk_bits = tl.load(BLK_BITS + tl.load(BLK_OFF + b) + pid_n)
    # keys nobody sees keep their zero gradient: candidate-only blocks, channel-less blocks
    if ((n0 < hist) & (((blk_bits >> c) & 1) != 0)) | (n0 == 0):
        offs_n = n0 + tl.arange(0, BN)
        mask_n = offs_n < length
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        rows_n = start + offs_n
        k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
        v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
        ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
        bits_j = tl.load(BITS + rows_n, mask=mask_n, other=0)
        dk = tl.full([BN, BD], 0.0, tl.float32)
        dv = tl.full([BN, BDV], 0.0, tl.float32)
        for m0 in range((n0 // BM) * BM, length, BM):
            offs_m = m0 + tl.arange(0, BM)
            mask_m = offs_m < length
            rows_m = start + offs_m
            q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
            do = _load_rows(DO, rows_m, stride_don, h * stride_doh, offs_dv, DV, mask_m)
            ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
            lse = tl.load(LSE + rows_m * stride_ln + h, mask=mask_m, other=0.0)
            delta = tl.load(DELTA + rows_m * stride_ln + h, mask=mask_m, other=0.0)
            vis = _tile_visible(offs_m, offs_n, mask_m, length, hist, ts_i, ts_j, bits_j, c)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            p = tl.where(vis, tl.exp(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision="ieee")
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision="ieee")
        _store_rows(
            DK, rows_n, stride_dkn, h * stride_dkh, offs_d, D, mask_n, (dk * scale).to(DK.dtype.element_ty)
        )
        _store_rows(DV_, rows_n, stride_dvn, h * stride_dvh, offs_dv, DV, mask_n, dv.to(DV_.dtype.element_ty))


def _block_table(offsets: Tensor, bits: Tensor, block_n: int, num_channels: int) -> tuple[Tensor, Tensor]:
    """Per segment, the index of its first key block; per key block, the OR of its keys' ``bits``.

    Returns ``blk_off`` int64 ``[B+1]`` and ``blk_bits`` int64 ``[num key blocks]``.
    """
    lengths = offsets[1:] - offsets[:-1]
    nblk = (lengths + block_n - 1) // block_n
    blk_off = torch.zeros_like(offsets)
    blk_off[1:] = nblk.cumsum(0)
    n = bits.numel()
    total = int(blk_off[-1]) if n else 0
    if total == 0:
        return blk_off, torch.zeros(1, dtype=torch.int64, device=bits.device)
    seg = torch.repeat_interleave(torch.arange(lengths.numel(), device=bits.device), lengths)  # [N]
    pos = torch.arange(n, device=bits.device) - offsets[seg]
    blk = blk_off[seg] + pos // block_n  # [N] key block of each token
    chans = torch.arange(num_channels, device=bits.device)
    per_chan = (bits[:, None] >> chans) & 1  # [N, C]
    any_chan = torch.zeros(total, num_channels, dtype=torch.int64, device=bits.device)
    any_chan.scatter_reduce_(0, blk[:, None].expand(-1, num_channels), per_chan, "amax")
    return blk_off, (any_chan << chans).sum(1)


def _prepare(offsets: Tensor, actions: Tensor, num_channels: int, block_n: int):
    bits = (actions << 1) | 1  # bit 0: content channel (every key); bit c: action c - 1
    blk_off, blk_bits = _block_table(offsets, bits, block_n, num_channels)
    return bits, blk_off, blk_bits


def cama_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    num_channels: int,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Forward: → output ``[N, H, Dv]`` (q's dtype) and logsumexp ``[N, H]`` (fp32)."""
    n, h, d = q.shape
    dv = v.shape[2]
    out = torch.empty_like(v)
    lse = torch.zeros(n, h, dtype=torch.float32, device=q.device)
    b = offsets.numel() - 1
    if n == 0 or b == 0:
        return out, lse
    bm, bn = block_sizes(q.device, d)
    bits, blk_off, blk_bits = _prepare(offsets, actions, num_channels, bn)
    max_len = int((offsets[1:] - offsets[:-1]).max())
    _cama_fwd[(triton.cdiv(max_len, bm), b, h)](
        q,
        k,
        v,
        out,
        lse,
        offsets,
        timestamps,
        bits,
        num_candidates,
        blk_off,
        blk_bits,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        lse.stride(0),
        scale,
        h // num_channels,
        D=d,
        DV=dv,
        BM=bm,
        BN=bn,
        BD=_pad(d),
        BDV=_pad(dv),
    )
    return out, lse


def cama_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    num_channels: int,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Backward from the saved logsumexp: gradients for (q, k, v)."""
    n, h, d = q.shape
    dv_dim = v.shape[2]
    do = grad_out.contiguous()
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    b = offsets.numel() - 1
    if n == 0 or b == 0:
        return dq, dk, dv
    delta = (do.float() * out.float()).sum(-1).contiguous()  # [N, H]
    bm, bn = block_sizes(q.device, d)
    bits, blk_off, blk_bits = _prepare(offsets, actions, num_channels, bn)
    max_len = int((offsets[1:] - offsets[:-1]).max())
    consts = dict(D=d, DV=dv_dim, BM=bm, BN=bn, BD=_pad(d), BDV=_pad(dv_dim))
    _cama_bwd_dq[(triton.cdiv(max_len, bm), b, h)](
        q,
        k,
        v,
        do,
        dq,
        lse,
        delta,
        offsets,
        timestamps,
        bits,
        num_candidates,
        blk_off,
        blk_bits,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        do.stride(0),
        do.stride(1),
        dq.stride(0),
        dq.stride(1),
        lse.stride(0),
        scale,
        h // num_channels,
        **consts,
    )
    _cama_bwd_dkdv[(triton.cdiv(max_len, bn), b, h)](
        q,
        k,
        v,
        do,
        dk,
        dv,
        lse,
        delta,
        offsets,
        timestamps,
        bits,
        num_candidates,
        blk_off,
        blk_bits,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        do.stride(0),
        do.stride(1),
        dk.stride(0),
        dk.stride(1),
        dv.stride(0),
        dv.stride(1),
        lse.stride(0),
        scale,
        h // num_channels,
        **consts,
    )
    return dq, dk, dv
