"""Fused attention ops on jagged (packed, unpadded) sequences.

One public function per op checks its inputs and dispatches on :class:`Kernel`:

- ``Kernel.REFERENCE``: readable PyTorch, one segment at a time (``reference.py``).
- ``Kernel.TRITON``: fused forward + backward Triton kernels (``triton_hstu.py``, ``triton_cama.py``),
  registered as ``torch.library`` custom ops so they work under ``torch.compile``. Triton is an
  optional dependency, imported only when this path is asked for.
- ``Kernel.FLEX``: ``torch.nn.attention.flex_attention`` with a block mask (``flex.py``).
- ``Kernel.PADDED``: the reference maths batched over users on ``[B, H, L, L]`` blocks padded to
  the longest segment (``padded.py``): fast on CPUs, memory quadratic in the longest segment.

See docs/kernels.md for the exact maths and the masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from recsys_lab.kernels.dispatch import Kernel, as_kernel, check_cama, check_hstu, triton_available
from recsys_lab.kernels.padded import cama_attention_padded, hstu_attention_padded
from recsys_lab.kernels.reference import (
    cama_attention_reference,
    hstu_attention_reference,
    time_bucket,
)

__all__ = [
    "Kernel",
    "as_kernel",
    "cama_attention",
    "cama_attention_padded",
    "cama_attention_reference",
    "hstu_attention",
    "hstu_attention_padded",
    "hstu_attention_reference",
    "time_bucket",
    "triton_available",
]


def _need_triton() -> None:
    ok, why = triton_available()
    if not ok:
        raise RuntimeError(f"kernel=triton was requested but {why}; use kernel=reference")


Op = Callable[..., Tensor]


def _implementation(
    kernel: Kernel, reference: Op, padded: Op, triton: Callable[[], Op], flex: Callable[[], Op]
) -> Op:
    """The implementation ``kernel`` names. ``triton`` and ``flex`` return theirs when called, so
    their modules (and Triton itself) are imported only when asked for."""
    if kernel is Kernel.REFERENCE:
        return reference
    if kernel is Kernel.PADDED:
        return padded
    if kernel is Kernel.TRITON:
        _need_triton()
        return triton()
    assert kernel is Kernel.FLEX, kernel
    return flex()


def _ops() -> Any:
    from recsys_lab.kernels import ops  # Triton custom ops: imports Triton

    return ops


def _flex() -> Any:
    from recsys_lab.kernels import flex

    return flex


def hstu_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    num_candidates: Tensor,
    pos_bias: Tensor,
    time_bias: Tensor,
    *,
    scale: float,
    kernel: Kernel | str = Kernel.REFERENCE,
) -> Tensor:
    """HSTU pointwise SiLU attention with relative position/time bias on jagged sequences.

    Args:
        q, k: ``[N, H, Dqk]``; v: ``[N, H, Dv]`` (float32/float16/bfloat16).
        offsets: int64 ``[B+1]``; timestamps: int64 ``[N]``; num_candidates: int64 ``[B]``.
        pos_bias: ``[H, P]``; time_bias: ``[H, T]``.
        scale: multiplies ``q·k``.
        kernel: which implementation runs.

    Returns:
        ``[N, H, Dv]`` in q's dtype. Gradients flow to q, k, v, pos_bias, time_bias.
    """
    kernel = as_kernel(kernel)
    check_hstu(q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, scale)
    run = _implementation(
        kernel,
        hstu_attention_reference,
        hstu_attention_padded,
        triton=lambda: _ops().hstu_attention_triton,
        flex=lambda: _flex().hstu_attention_flex,
    )
    return run(q, k, v, offsets, timestamps, num_candidates, pos_bias, time_bias, float(scale))


def cama_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    *,
    num_channels: int,
    scale: float,
    kernel: Kernel | str = Kernel.REFERENCE,
) -> Tensor:
    """CamA multi-channel masked softmax attention on jagged sequences.

    Args:
        q, k: ``[N, H, Dqk]``; v: ``[N, H, Dv]``.
        offsets: int64 ``[B+1]``; timestamps, actions: int64 ``[N]``; num_candidates: int64 ``[B]``.
        num_channels: C; heads split into C equal groups, group c is channel c.
        scale: multiplies ``q·k`` before the softmax.
        kernel: which implementation runs.

    Returns:
        ``[N, H, Dv]`` in q's dtype. Gradients flow to q, k, v.
    """
    kernel = as_kernel(kernel)
    check_cama(q, k, v, offsets, timestamps, actions, num_candidates, num_channels, scale)
    run = _implementation(
        kernel,
        cama_attention_reference,
        cama_attention_padded,
        triton=lambda: _ops().cama_attention_triton,
        flex=lambda: _flex().cama_attention_flex,
    )
    return run(q, k, v, offsets, timestamps, actions, num_candidates, num_channels, float(scale))
