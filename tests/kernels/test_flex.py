"""The FlexAttention path against the reference (forward; gradients too where a GPU exists)."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.kernels import Kernel, cama_attention
from tests.kernels.jagged_inputs import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_flex_cama_matches_reference():
    x = make_inputs([21, 0, 1, 37], [3, 0, 1, 5], heads=4, dim=16, dim_v=16, device=DEVICE)
    grad = DEVICE == "cuda"  # torch 2.13 FlexAttention has no backward on CPU
    q, k, v = (t.detach().requires_grad_(grad) for t in (x.q, x.k, x.v))
    args = (x.offsets, x.timestamps, x.actions, x.num_candidates)
    ref = cama_attention(q, k, v, *args, num_channels=2, scale=0.3, kernel=Kernel.REFERENCE)
    out = cama_attention(q, k, v, *args, num_channels=2, scale=0.3, kernel=Kernel.FLEX)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    if grad:
        g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
        g_out = torch.autograd.grad(out.square().sum(), (q, k, v))
        for a, b in zip(g_out, g_ref):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_flex_hstu_is_not_available_with_a_clear_message():
    x = make_inputs([4], [1], heads=2, dim=4)
    with pytest.raises(NotImplementedError, match="softmax"):
        x.hstu(scale=1.0, kernel="flex")


def test_flex_small_heads_on_cuda_are_refused_with_the_alternatives():
    from recsys_lab.kernels.flex import check_flex_dims

    q, v = torch.empty(4, 2, 16, device="meta"), torch.empty(4, 2, 8, device="meta")
    check_flex_dims(q, v)  # not CUDA: eager FlexAttention takes any width
    with pytest.raises(ValueError, match=r">= 16.*kernel=triton"):
        check_flex_dims(_OnCuda(q), _OnCuda(v))


class _OnCuda:
    """A tensor stand-in that reports a CUDA device (the check reads only device and shape)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape = t.shape
        self.device = torch.device("cuda")
