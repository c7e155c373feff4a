"""Fused Triton kernels for HSTU pointwise SiLU attention on jagged sequences.

Grid: one program per (query or key block of a segment, segment, head). A query block of segment
b iterates key blocks only over ``[0, min(block end, history end))`` of its own segment: tiles
after the causal limit and tiles made only of candidate keys are never visited; a candidate's
own (diagonal) term is added row-wise, not as a tile. No ``L × L`` matrix is ever stored.

HSTU has no softmax, so the backward keeps no statistics and recomputes the weights:
``_hstu_bwd_dq`` walks key blocks per query block (dq, and the position/time bias gradients
through fp32 atomics); ``_hstu_bwd_dkdv`` walks query blocks per key block (dk, dv).

Import this module only after ``TRITON_INTERPRET`` is decided (the dispatcher imports it lazily).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.standard import _elementwise_max, _elementwise_min, _sum_combine

# Small helpers instead of triton.language.standard's (tl.sum, tl.max, tl.zeros, tl.sigmoid):
# those are @triton.jit functions created when triton is first imported, so they are not
# interpretable when TRITON_INTERPRET=1 is set after that (as in the test suite). These are
# defined with this module, after the environment is decided; the reductions pass the standard
# combine functions, which the interpreter recognises and runs with numpy.


@triton.jit
def _sum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _sum_combine)


@triton.jit
def _max(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _elementwise_max)


@triton.jit
def _min(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _elementwise_min)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _load_rows(ptr, rows, stride_row, head_offset, offs, width, row_mask):
    """The tile ``ptr[rows, head, offs]`` (``[len(rows), len(offs)]``), zero where ``row_mask`` is
    False or ``offs >= width`` (feature columns padded to a power of two)."""
    return tl.load(
        ptr + rows[:, None] * stride_row + head_offset + offs[None, :],
        mask=row_mask[:, None] & (offs < width)[None, :],
        other=0.0,
    )


@triton.jit
def _store_rows(ptr, rows, stride_row, head_offset, offs, width, row_mask, value):
    """Store ``value`` into the tile ``ptr[rows, head, offs]`` where ``row_mask`` and ``offs < width``."""
    tl.store(
        ptr + rows[:, None] * stride_row + head_offset + offs[None, :],
        value,
        mask=row_mask[:, None] & (offs < width)[None, :],
    )


@triton.jit
def _time_bucket(dt, NUM_TIME: tl.constexpr):
    """``min(floor(log2(1 + max(dt, 0))), NUM_TIME - 1)`` exactly on int64 ``dt``."""
    x = tl.maximum(dt, 0) + 1
    k = tl.floor(tl.log2(x.to(tl.float32))).to(tl.int64)
    k = tl.minimum(k, 61)
    one = tl.full(k.shape, 1, tl.int64)
    k = k - ((one << k) > x).to(tl.int64)  # float32 rounding may overshoot by one ...
    k = k + ((one << (k + 1)) <= x).to(tl.int64)  # ... or undershoot by one
    return tl.minimum(k, NUM_TIME - 1)


@triton.jit
def _weights(
    q,
    k,
    ts_i,
    ts_j,
    offs_m,
    offs_n,
    h,
    PB,
    TB,
    stride_pb,
    stride_tb,
    scale,
    inv_len,
    NUM_POS: tl.constexpr,
    NUM_TIME: tl.constexpr,
):
    """Pre-activation ``a`` ``[BM, BN]`` plus the bias gather indices of one tile."""
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    rel = tl.minimum(tl.maximum(offs_m[:, None] - offs_n[None, :], 0), NUM_POS - 1)
    bucket = _time_bucket(ts_i[:, None] - ts_j[None, :], NUM_TIME)
    a = s + tl.load(PB + h * stride_pb + rel) + tl.load(TB + h * stride_tb + bucket)
    return a, rel, bucket


@triton.jit
def _hstu_fwd(
    Q,
    K,
    V,
    Out,
    OFF,
    TS,
    NC,
    PB,
    TB,
    stride_qn,
    stride_qh,
    stride_kn,
    stride_kh,
    stride_vn,
    stride_vh,
    stride_on,
    stride_oh,
    stride_pb,
    stride_tb,
    scale,
    D: tl.constexpr,
    DV: tl.constexpr,
    NUM_POS: tl.constexpr,
    NUM_TIME: tl.constexpr,
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
    hist = length - tl.load(NC + b)
    inv_len = 1.0 / length.to(tl.float32)
    offs_m = m0 + tl.arange(0, BM)
    mask_m = offs_m < length
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    rows_m = start + offs_m
    q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
    ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
    acc = tl.full([BM, BDV], 0.0, tl.float32)
    hi = tl.minimum(m0 + BM, hist)  # history keys up to the causal limit of this block
    for n0 in range(0, hi, BN):
        offs_n = n0 + tl.arange(0, BN)
        mask_n = offs_n < hi
        rows_n = start + offs_n
        k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
        v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
        ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
        a, _, _ = _weights(
            q,
            k,
            ts_i,
            ts_j,
            offs_m,
            offs_n,
            h,
            PB,
            TB,
            stride_pb,
            stride_tb,
            scale,
            inv_len,
            NUM_POS,
            NUM_TIME,
        )
        vis = mask_m[:, None] & mask_n[None, :] & (offs_n[None, :] <= offs_m[:, None])
        w = tl.where(vis, a * _sigmoid(a) * inv_len, 0.0)
        acc += tl.dot(w.to(v.dtype), v, input_precision="ieee")
    # a candidate's own term (the only candidate key it sees), row-wise
    cand = mask_m & (offs_m >= hist)
    kd = _load_rows(K, rows_m, stride_kn, h * stride_kh, offs_d, D, cand)
    vd = _load_rows(V, rows_m, stride_vn, h * stride_vh, offs_dv, DV, cand)
    a_d = _sum(q.to(tl.float32) * kd.to(tl.float32), axis=1) * scale
    a_d += tl.load(PB + h * stride_pb) + tl.load(TB + h * stride_tb)
    w_d = tl.where(cand, a_d * _sigmoid(a_d) * inv_len, 0.0)
    acc += w_d[:, None] * vd.to(tl.float32)
    _store_rows(Out, rows_m, stride_on, h * stride_oh, offs_dv, DV, mask_m, acc.to(Out.dtype.element_ty))


@triton.jit
def _hstu_bwd_dq(
    Q,
    K,
    V,
    DO,
    DQ,
    DPB,
    DTB,
    OFF,
    TS,
    NC,
    PB,
    TB,
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
    stride_pb,
    stride_tb,
    scale,
    D: tl.constexpr,
    DV: tl.constexpr,
    NUM_POS: tl.constexpr,
    NUM_TIME: tl.constexpr,
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
    hist = length - tl.load(NC + b)
    inv_len = 1.0 / length.to(tl.float32)
    offs_m = m0 + tl.arange(0, BM)
    mask_m = offs_m < length
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    rows_m = start + offs_m
    q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
    do = _load_rows(DO, rows_m, stride_don, h * stride_doh, offs_dv, DV, mask_m)
    ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
    dq = tl.full([BM, BD], 0.0, tl.float32)
    hi = tl.minimum(m0 + BM, hist)
    for n0 in range(0, hi, BN):
        offs_n = n0 + tl.arange(0, BN)
        mask_n = offs_n < hi
        rows_n = start + offs_n
        k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
        v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
        ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
        a, rel, bucket = _weights(
            q,
            k,
            ts_i,
            ts_j,
            offs_m,
            offs_n,
            h,
            PB,
            TB,
            stride_pb,
            stride_tb,
            scale,
            inv_len,
            NUM_POS,
            NUM_TIME,
        )
        vis = mask_m[:, None] & mask_n[None, :] & (offs_n[None, :] <= offs_m[:, None])
        sig = _sigmoid(a)
        dw = tl.dot(do, tl.trans(v), input_precision="ieee")  # dL/dw [BM, BN]
        da = tl.where(vis, dw * sig * (1.0 + a * (1.0 - sig)) * inv_len, 0.0)
        dq += tl.dot(da.to(k.dtype), k, input_precision="ieee")
        # bias gradients: a tile entirely beyond the last position bucket adds to one entry
        if m0 - (n0 + BN - 1) >= NUM_POS - 1:
            tl.atomic_add(DPB + h * NUM_POS + NUM_POS - 1, _sum(_sum(da, axis=1), axis=0))
        else:
            tl.atomic_add(DPB + h * NUM_POS + rel, da, mask=vis)
        # time buckets are logarithmic: a tile spans few of them, reduce each once
        b_lo = _min(_min(tl.where(vis, bucket, NUM_TIME), axis=1), axis=0)
        b_hi = _max(_max(tl.where(vis, bucket, -1), axis=1), axis=0)
        for t in range(b_lo, b_hi + 1):
            part = _sum(_sum(tl.where(bucket == t, da, 0.0), axis=1), axis=0)
            tl.atomic_add(DTB + h * NUM_TIME + t, part)
    cand = mask_m & (offs_m >= hist)
    kd = _load_rows(K, rows_m, stride_kn, h * stride_kh, offs_d, D, cand)
    vd = _load_rows(V, rows_m, stride_vn, h * stride_vh, offs_dv, DV, cand)
    a_d = _sum(q.to(tl.float32) * kd.to(tl.float32), axis=1) * scale
    a_d += tl.load(PB + h * stride_pb) + tl.load(TB + h * stride_tb)
    sig_d = _sigmoid(a_d)
    dw_d = _sum(do.to(tl.float32) * vd.to(tl.float32), axis=1)
    da_d = tl.where(cand, dw_d * sig_d * (1.0 + a_d * (1.0 - sig_d)) * inv_len, 0.0)
    dq += da_d[:, None] * kd.to(tl.float32)
    diag = _sum(da_d, axis=0)
    tl.atomic_add(DPB + h * NUM_POS, diag)
    tl.atomic_add(DTB + h * NUM_TIME, diag)
    _store_rows(
        DQ, rows_m, stride_dqn, h * stride_dqh, offs_d, D, mask_m, (dq * scale).to(DQ.dtype.element_ty)
    )


@triton.jit
def _hstu_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    DK,
    DV_,
    OFF,
    TS,
    NC,
    PB,
    TB,
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
    stride_pb,
    stride_tb,
    scale,
    D: tl.constexpr,
    DV: tl.constexpr,
    NUM_POS: tl.constexpr,
    NUM_TIME: tl.constexpr,
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
    hist = length - tl.load(NC + b)
    inv_len = 1.0 / length.to(tl.float32)
    offs_n = n0 + tl.arange(0, BN)
    mask_n = offs_n < length
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    rows_n = start + offs_n
    k = _load_rows(K, rows_n, stride_kn, h * stride_kh, offs_d, D, mask_n)
    v = _load_rows(V, rows_n, stride_vn, h * stride_vh, offs_dv, DV, mask_n)
    ts_j = tl.load(TS + rows_n, mask=mask_n, other=0)
    hist_n = mask_n & (offs_n < hist)  # history keys of this block
    dk = tl.full([BN, BD], 0.0, tl.float32)
    dv = tl.full([BN, BDV], 0.0, tl.float32)
    # history keys are seen by every later row of the segment (candidates included)
    lo = (n0 // BM) * BM
    if n0 < hist:
        for m0 in range(lo, length, BM):
            offs_m = m0 + tl.arange(0, BM)
            mask_m = offs_m < length
            rows_m = start + offs_m
            q = _load_rows(Q, rows_m, stride_qn, h * stride_qh, offs_d, D, mask_m)
            do = _load_rows(DO, rows_m, stride_don, h * stride_doh, offs_dv, DV, mask_m)
            ts_i = tl.load(TS + rows_m, mask=mask_m, other=0)
            a, _, _ = _weights(
                q,
                k,
                ts_i,
                ts_j,
                offs_m,
                offs_n,
                h,
                PB,
                TB,
                stride_pb,
                stride_tb,
                scale,
                inv_len,
                NUM_POS,
                NUM_TIME,
            )
            vis = mask_m[:, None] & hist_n[None, :] & (offs_n[None, :] <= offs_m[:, None])
            sig = _sigmoid(a)
            w = tl.where(vis, a * sig * inv_len, 0.0)
            dv += tl.dot(tl.trans(w.to(do.dtype)), do, input_precision="ieee")
            dw = tl.dot(do, tl.trans(v), input_precision="ieee")
            da = tl.where(vis, dw * sig * (1.0 + a * (1.0 - sig)) * inv_len, 0.0)
            dk += tl.dot(tl.trans(da.to(q.dtype)), q, input_precision="ieee")
    # a candidate key is seen only by itself
    cand = mask_n & (offs_n >= hist)
    qd = _load_rows(Q, rows_n, stride_qn, h * stride_qh, offs_d, D, cand)
    dod = _load_rows(DO, rows_n, stride_don, h * stride_doh, offs_dv, DV, cand)
    a_d = _sum(qd.to(tl.float32) * k.to(tl.float32), axis=1) * scale
    a_d += tl.load(PB + h * stride_pb) + tl.load(TB + h * stride_tb)
    sig_d = _sigmoid(a_d)
    w_d = tl.where(cand, a_d * sig_d * inv_len, 0.0)
    dv += w_d[:, None] * dod.to(tl.float32)
    dw_d = _sum(dod.to(tl.float32) * v.to(tl.float32), axis=1)
    da_d = tl.where(cand, dw_d * sig_d * (1.0 + a_d * (1.0 - sig_d)) * inv_len, 0.0)
    dk += da_d[:, None] * qd.to(tl.float32)
    _store_rows(
        DK, rows_n, stride_dkn, h * stride_dkh, offs_d, D, mask_n, (dk * scale).to(DK.dtype.element_ty)
    )
    _store_rows(DV_, rows_n, stride_dvn, h * stride_dvh, offs_dv, DV, mask_n, dv.to(DV_.dtype.element_ty))


def block_sizes(device: torch.device, dim: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N): 16 under the CPU interpreter, 64 on a GPU."""
    if device.type != "cuda":
        return 16, 16
    return (64, 64) if dim <= 128 else (32, 32)


def _pad(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _num_blocks(offsets: Tensor, block: int) -> int:
    """Blocks of ``block`` rows covering the longest segment (the grid's first axis)."""
    lengths = offsets[1:] - offsets[:-1]
    max_len = int(lengths.max()) if lengths.numel() else 0
    return triton.cdiv(max(max_len, 1), block)


def hstu_forward(
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
    """Forward: ``q, k`` ``[N, H, D]``, ``v`` ``[N, H, Dv]`` → ``[N, H, Dv]`` (q's dtype)."""
    n, h, d = q.shape
    dv = v.shape[2]
    out = torch.empty_like(v)
    b = offsets.numel() - 1
    if n == 0 or b == 0:
        return out
    bm, bn = block_sizes(q.device, d)
    blocks = _num_blocks(offsets, bm)
    pb, tb = pos_bias.float().contiguous(), time_bias.float().contiguous()
    _hstu_fwd[(blocks, b, h)](
        q,
        k,
        v,
        out,
        offsets,
        timestamps,
        num_candidates,
        pb,
        tb,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        pb.stride(0),
        tb.stride(0),
        scale,
        D=d,
        DV=dv,
        NUM_POS=pb.shape[1],
        NUM_TIME=tb.shape[1],
        BM=bm,
        BN=bn,
        BD=_pad(d),
        BDV=_pad(dv),
    )
    return out


def hstu_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    num_candidates: Tensor,
    pos_bias: Tensor,
    time_bias: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward: gradients for (q, k, v, pos_bias, time_bias), recomputing the weights."""
    n, h, d = q.shape
    dv_dim = v.shape[2]
    do = grad_out.contiguous()
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dpb = torch.zeros(pos_bias.shape, dtype=torch.float32, device=q.device)
    dtb = torch.zeros(time_bias.shape, dtype=torch.float32, device=q.device)
    b = offsets.numel() - 1
    if n > 0 and b > 0:
        bm, bn = block_sizes(q.device, d)
        blocks_m = _num_blocks(offsets, bm)
        blocks_n = _num_blocks(offsets, bn)
        pb, tb = pos_bias.float().contiguous(), time_bias.float().contiguous()
        consts = dict(
            D=d,
            DV=dv_dim,
            NUM_POS=pb.shape[1],
            NUM_TIME=tb.shape[1],
            BM=bm,
            BN=bn,
            BD=_pad(d),
            BDV=_pad(dv_dim),
        )
        _hstu_bwd_dq[(blocks_m, b, h)](
            q,
            k,
            v,
            do,
            dq,
            dpb,
            dtb,
            offsets,
            timestamps,
            num_candidates,
            pb,
            tb,
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
            pb.stride(0),
            tb.stride(0),
            scale,
            **consts,
        )
        _hstu_bwd_dkdv[(blocks_n, b, h)](
            q,
            k,
            v,
            do,
            dk,
            dv,
            offsets,
            timestamps,
            num_candidates,
            pb,
            tb,
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
            pb.stride(0),
            tb.stride(0),
            scale,
            **consts,
        )
    return dq, dk, dv, dpb.to(pos_bias.dtype), dtb.to(time_bias.dtype)
