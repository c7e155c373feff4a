"""The FlexAttention path against the reference (forward; gradients too where a GPU exists)."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.kernels import Kernel, cama_attention, hstu_attention
from tests.kernels.jagged_inputs import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_flex_cama_matches_reference():
    x = make_inputs([21, 0, 1, 37], [3, 0, 1, 5], heads=4, dim=16, dim_v=8, device=DEVICE)
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
        hstu_attention(
            x.q,
            x.k,
            x.v,
            x.offsets,
            x.timestamps,
            x.num_candidates,
            x.pos_bias,
            x.time_bias,
            scale=1.0,
            kernel="flex",
        )
