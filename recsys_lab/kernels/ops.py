"""``torch.library`` custom ops around the Triton kernels, so they work under ``torch.compile``.

Each op has a fake (meta) implementation giving output shapes, and its backward is registered
with ``register_autograd`` (itself a custom op, so compiled backward graphs stay opaque too).
Imported lazily by the dispatcher: importing it imports Triton.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from recsys_lab.kernels import triton_cama, triton_hstu

# ---------------------------------------------------------------- HSTU


@torch.library.custom_op("recsys_lab::hstu_attn_fwd", mutates_args=())
def _hstu_fwd(
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
    return triton_hstu.hstu_forward(q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale)


@_hstu_fwd.register_fake
def _(q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale):
    return torch.empty_like(v)


@torch.library.custom_op("recsys_lab::hstu_attn_bwd", mutates_args=())
def _hstu_bwd(
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
    return triton_hstu.hstu_backward(
        grad_out, q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale
    )


@_hstu_bwd.register_fake
def _(grad_out, q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale):
    return (
        torch.empty_like(q),
        torch.empty_like(k),
        torch.empty_like(v),
        torch.empty_like(pos_bias),
        torch.empty_like(time_bias),
    )


def _hstu_setup(ctx, inputs, output) -> None:
    q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale = inputs
    ctx.save_for_backward(q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias)
    ctx.scale = scale


def _hstu_grad(ctx, grad_out):
    q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias = ctx.saved_tensors
    dq, dk, dv, dpb, dtb = _hstu_bwd(
        grad_out, q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, ctx.scale
    )
    return dq, dk, dv, None, None, None, dpb, dtb, None


_hstu_fwd.register_autograd(_hstu_grad, setup_context=_hstu_setup)


def hstu_attention_triton(
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
    """Triton HSTU attention (inputs already validated); see ``hstu_attention``."""
    _check_device_dtype("hstu_attention", q)
    if time_bias.shape[1] > 62:
        raise ValueError(
            f"hstu_attention: kernel=triton supports at most 62 time buckets, got {time_bias.shape[1]}"
        )
    return _hstu_fwd(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        offsets.contiguous(),
        timestamps.contiguous(),
        num_candidates.contiguous(),
        pos_bias,
        time_bias,
        scale,
    )


# ---------------------------------------------------------------- CamA


@torch.library.custom_op("recsys_lab::cama_attn_fwd", mutates_args=())
def _cama_fwd(
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
    return triton_cama.cama_forward(
        q, k, v, offsets, timestamps, actions, num_candidates, num_channels, scale
    )


@_cama_fwd.register_fake
def _(q, k, v, offsets, timestamps, actions, num_candidates, num_channels, scale):
    lse = q.new_empty(q.shape[:2], dtype=torch.float32)
    return torch.empty_like(v), lse


@torch.library.custom_op("recsys_lab::cama_attn_bwd", mutates_args=())
def _cama_bwd(
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
    return triton_cama.cama_backward(
        grad_out, q, k, v, out, lse, offsets, timestamps, actions, num_candidates, num_channels, scale
    )


@_cama_bwd.register_fake
def _(grad_out, q, k, v, out, lse, offsets, timestamps, actions, num_candidates, num_channels, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _cama_setup(ctx, inputs, output) -> None:
    q, k, v, offsets, timestamps, actions, num_candidates, num_channels, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, offsets, timestamps, actions, num_candidates)
    ctx.num_channels, ctx.scale = num_channels, scale


def _cama_grad(ctx, grad_out, grad_lse):
    q, k, v, out, lse, offsets, timestamps, actions, num_candidates = ctx.saved_tensors
    dq, dk, dv = _cama_bwd(
        grad_out, q, k, v, out, lse, offsets, timestamps, actions, num_candidates, ctx.num_channels, ctx.scale
    )
    return dq, dk, dv, None, None, None, None, None, None


_cama_fwd.register_autograd(_cama_grad, setup_context=_cama_setup)


def cama_attention_triton(
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
    """Triton CamA attention (inputs already validated); see ``cama_attention``."""
    _check_device_dtype("cama_attention", q)
    out, _ = _cama_fwd(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        offsets.contiguous(),
        timestamps.contiguous(),
        actions.contiguous(),
        num_candidates.contiguous(),
        num_channels,
        scale,
    )
    return out


def _check_device_dtype(op: str, q: Tensor) -> None:
    if q.dtype == torch.float64:
        raise ValueError(f"{op}: kernel=triton takes float32/float16/bfloat16, got float64")
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"{op}: kernel=triton needs CUDA tensors (got {q.device}); on CPU set "
            "TRITON_INTERPRET=1 before importing recsys_lab.kernels (tests only) or use "
            "kernel=reference"
        )
