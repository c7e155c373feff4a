"""The kernel enum and the input checks shared by every attention op.

Shapes (N = tokens of the packed batch, B = segments/users, H = heads):

- ``q, k``: ``[N, H, Dqk]``; ``v``: ``[N, H, Dv]`` (float32 / float16 / bfloat16, one dtype; float64 on the reference path only).
- ``offsets``: int64 ``[B + 1]``, ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == N``.
- ``timestamps``: int64 ``[N]``, non-decreasing within a segment.
- ``num_candidates``: int64 ``[B]``, ``0 <= num_candidates[b] <= len(b)``.
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # float64: reference only


class Kernel(enum.StrEnum):
    """Which implementation of a fused op runs."""

    REFERENCE = "reference"  # plain PyTorch, one segment at a time
    TRITON = "triton"  # fused Triton forward + backward (optional dependency)
    FLEX = "flex"  # torch FlexAttention with a block mask
    PADDED = "padded"  # plain PyTorch batched over users on blocks padded to the longest segment


def as_kernel(kernel: Kernel | str) -> Kernel:
    """Parse ``kernel`` (enum or its string value) with a clear error."""
    if isinstance(kernel, Kernel):
        return kernel
    try:
        return Kernel(str(kernel).lower())
    except ValueError:
        choices = ", ".join(k.value for k in Kernel)
        raise ValueError(f"unknown attention kernel {kernel!r}; choose one of: {choices}") from None


def triton_available() -> tuple[bool, str]:
    """Whether the Triton path can run here, and why not when it cannot."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False, "triton is not installed (pip install 'recsys_lab[kernels]')"
    return True, ""


def _values_checked() -> bool:
    """Data-dependent checks (they sync with the device) are skipped inside torch.compile graphs."""
    return not torch.compiler.is_compiling()


def check_common(
    op: str, q: Tensor, k: Tensor, v: Tensor, offsets: Tensor, timestamps: Tensor, num_candidates: Tensor
) -> None:
    """Validate the tensors both attention ops share; raise ``ValueError`` naming the problem."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 3:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be a [N, H, D] tensor, got {shape}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"{op}: {name} must be a float tensor (float32/float16/bfloat16; float64 for the reference), got {t.dtype}"
            )
    n, h, dqk = q.shape
    if k.shape != q.shape:
        raise ValueError(f"{op}: k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:2] != (n, h):
        raise ValueError(f"{op}: v must be [N={n}, H={h}, Dv], got {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"{op}: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if dqk == 0 or v.shape[2] == 0 or h == 0:
        raise ValueError(
            f"{op}: head count and head dims must be positive, got q {tuple(q.shape)}, v {tuple(v.shape)}"
        )
    for name, t, shape in (
        ("offsets", offsets, None),
        ("timestamps", timestamps, (n,)),
        ("num_candidates", num_candidates, None),
    ):
        if not isinstance(t, Tensor) or t.dtype != torch.int64:
            dt = t.dtype if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be an int64 tensor, got {dt}")
        if shape is not None and tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape}, got {tuple(t.shape)}")
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(f"{op}: offsets must be [B+1] with B >= 0, got shape {tuple(offsets.shape)}")
    b = offsets.numel() - 1
    if tuple(num_candidates.shape) != (b,):
        raise ValueError(f"{op}: num_candidates must be [B={b}], got {tuple(num_candidates.shape)}")
    devices = {t.device for t in (q, k, v, offsets, timestamps, num_candidates)}
    if len(devices) != 1:
        raise ValueError(f"{op}: all inputs must be on one device, got {sorted(map(str, devices))}")
    if not _values_checked():
        return
    if int(offsets[0]) != 0 or int(offsets[-1]) != n:
        raise ValueError(
            f"{op}: offsets must start at 0 and end at N={n}, got {int(offsets[0])}..{int(offsets[-1])}"
        )
    lengths = offsets[1:] - offsets[:-1]
    if bool((lengths < 0).any()):
        raise ValueError(f"{op}: offsets must be non-decreasing")
    if bool((num_candidates < 0).any()) or bool((num_candidates > lengths).any()):
        raise ValueError(
            f"{op}: num_candidates must lie in [0, segment length]; got "
            f"{num_candidates.tolist()[:8]} for lengths {lengths.tolist()[:8]}"
        )
    if n > 1:
        seg_start = torch.zeros(n, dtype=torch.bool, device=offsets.device)
        seg_start[offsets[:-1][lengths > 0]] = True
        step = timestamps[1:] - timestamps[:-1]
        if bool(((step < 0) & ~seg_start[1:]).any()):
            raise ValueError(f"{op}: timestamps must be non-decreasing within each segment")


def check_hstu(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    num_candidates: Tensor,
    pos_bias: Tensor,
    time_bias: Tensor,
    scale: float,
) -> None:
    """Validate ``hstu_attention``'s inputs."""
    op = "hstu_attention"
    check_common(op, q, k, v, offsets, timestamps, num_candidates)
    h = q.shape[1]
    for name, t in (("pos_bias", pos_bias), ("time_bias", time_bias)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[0] != h or t.shape[1] < 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be [H={h}, >=1], got {shape}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{op}: {name} must be a float tensor, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{op}: {name} is on {t.device}, q on {q.device}")
    if not isinstance(scale, int | float):
        raise ValueError(f"{op}: scale must be a Python float, got {type(scale).__name__}")


def check_cama(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor,
    actions: Tensor,
    num_candidates: Tensor,
    num_channels: int,
    scale: float,
) -> None:
    """Validate ``cama_attention``'s inputs."""
    op = "cama_attention"
    check_common(op, q, k, v, offsets, timestamps, num_candidates)
    n, h = q.shape[:2]
    if not isinstance(actions, Tensor) or actions.dtype != torch.int64 or tuple(actions.shape) != (n,):
        desc = f"{actions.dtype} {tuple(actions.shape)}" if isinstance(actions, Tensor) else type(actions)
        raise ValueError(f"{op}: actions must be an int64 [N={n}] bitmask, got {desc}")
    if actions.device != q.device:
        raise ValueError(f"{op}: actions is on {actions.device}, q on {q.device}")
    if not isinstance(num_channels, int) or num_channels < 1 or h % num_channels != 0:
        raise ValueError(
            f"{op}: num_channels={num_channels!r} must be a positive divisor of the head count H={h}"
        )
    if num_channels - 1 > 62:
        raise ValueError(f"{op}: at most 63 channels (62 action bits), got {num_channels}")
    if not isinstance(scale, int | float):
        raise ValueError(f"{op}: scale must be a Python float, got {type(scale).__name__}")
