"""Triton kernels against the PyTorch reference: forward and every input gradient.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (set in this folder's conftest.py), so shapes
are tiny: block 16, lengths up to 40 (not multiples of 16), empty segments, length-1 segments,
all-candidate segments. On a CUDA machine the same tests run compiled on the GPU.

Tolerances (absolute and relative, against the reference run in float32 maths on the same
inputs): float32 1e-4; float16 2e-2 for the output and 5e-2 for gradients (the kernels feed
fp16 tiles to the matmuls, as FlashAttention does); bfloat16 (GPU only) 5e-2 and 1e-1.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "triton",
    reason="triton is not installed: the Triton kernel tests need it "
    "(pip install 'recsys_lab[kernels]'); the reference path is tested without it",
)

from recsys_lab.kernels import Kernel, cama_attention, hstu_attention
from tests.kernels.jagged_inputs import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (2e-2, 5e-2), torch.bfloat16: (5e-2, 1e-1)}

# (lengths, num_candidates): empty, length-1, all-candidate and non-multiple-of-16 segments
SHAPES = {
    "mixed": ([21, 0, 1, 37], [3, 0, 1, 5]),
    "candidates": ([17, 5, 2], [17, 0, 2]),
}


def _run(op: str, x, kernel: Kernel, num_channels: int = 2):
    for t in x.leaves():
        t.grad = None
    if op == "hstu":
        out = x.hstu(scale=0.25, kernel=kernel)
    else:
        out = x.cama(num_channels=num_channels, scale=0.25, kernel=kernel)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out)
    (out.float() * grad.float()).sum().backward()
    leaves = x.leaves() if op == "hstu" else x.leaves()[:3]
    return out.detach(), [t.grad.detach().clone() for t in leaves]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    scale = want.float().abs().max().clamp(min=1.0)
    err = (got.float() - want.float()).abs().max()
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} x {scale:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op", ["hstu", "cama"])
def test_triton_matches_reference(op, shape, dtype):
    lengths, cands = SHAPES[shape]
    x = make_inputs(
        lengths,
        cands,
        heads=2,
        dim=16,
        dim_v=24,
        num_pos=12,
        num_time=5,
        dtype=dtype,
        device=DEVICE,
        seed=len(lengths),
    )
    _compare(op, x, dtype, num_channels=2)


def test_triton_cama_four_channels():
    x = make_inputs([23, 1, 9], [2, 0, 0], heads=4, dim=16, num_actions=3, device=DEVICE)
    _compare("cama", x, torch.float32, num_channels=4)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["hstu", "cama"])
def test_triton_matches_reference_longer(op):
    x = make_inputs([130, 0, 77, 1, 64], [10, 0, 0, 1, 64], heads=4, dim=32, dim_v=16, device=DEVICE)
    _compare(op, x, torch.float32, num_channels=2)


@pytest.mark.skipif(
    DEVICE != "cuda",
    reason="GPU-sized shapes (64-row tiles, users of up to 1000 events, bf16) need a CUDA GPU; "
    "the interpreter covers the same code paths on the small shapes above",
)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"]
)
@pytest.mark.parametrize("op", ["hstu", "cama"])
def test_triton_matches_reference_gpu_sizes(op, dtype):
    lengths, cands = [1000, 0, 1, 257, 64, 513, 130], [8, 0, 1, 8, 64, 0, 129]
    x = make_inputs(lengths, cands, heads=4, dim=64, dim_v=64, dtype=dtype, device=DEVICE, seed=11)
    _compare(op, x, dtype, num_channels=2)


def _compare(op: str, x, dtype: torch.dtype, num_channels: int) -> None:
    ref_out, ref_grads = _run(op, x, Kernel.REFERENCE, num_channels=num_channels)
    out, grads = _run(op, x, Kernel.TRITON, num_channels=num_channels)
    assert out.dtype == dtype and out.shape == ref_out.shape
    tol_out, tol_grad = TOL[dtype]
    _close("out", out, ref_out, tol_out)
    names = ["dq", "dk", "dv", "dpos_bias", "dtime_bias"]
    for name, g, r in zip(names, grads, ref_grads):
        assert g.dtype == r.dtype and g.shape == r.shape
        _close(name, g, r, tol_grad)


def test_triton_hstu_far_positions_and_large_time_gaps():
    """Tiles beyond the last position bucket (one atomic) and wide timestamp gaps (many buckets)."""
    x = make_inputs([36, 5], [4, 0], heads=2, dim=16, num_pos=3, num_time=12, max_gap=5000, device=DEVICE)
    ref_out, ref_grads = _run("hstu", x, Kernel.REFERENCE)
    out, grads = _run("hstu", x, Kernel.TRITON)
    _close("out", out, ref_out, 1e-4)
    for name, g, r in zip(["dq", "dk", "dv", "dpos_bias", "dtime_bias"], grads, ref_grads):
        _close(name, g, r, 1e-4)


def test_triton_cama_skips_channel_less_blocks_correctly():
    """Channel 2's action appears in one key block only: the other blocks are skipped, same result."""
    x = make_inputs([40], [3], heads=3, dim=16, device=DEVICE, num_actions=1)
    x.actions = x.actions.clone()
    x.actions[20] |= 2  # action 1 (channel 2) only at row 20 -> key block 1 of 3
    ref_out, ref_grads = _run("cama", x, Kernel.REFERENCE, num_channels=3)
    out, grads = _run("cama", x, Kernel.TRITON, num_channels=3)
    _close("out", out, ref_out, 1e-4)
    for name, g, r in zip(["dq", "dk", "dv"], grads, ref_grads):
        _close(name, g, r, 1e-4)
    # head 2 (channel 2) keys other than the sink and row 20 get no gradient
    dk = grads[1][:, 2]
    assert dk[1:20].abs().max() == 0 and dk[21:].abs().max() == 0 and dk[20].abs().max() > 0


def test_triton_ops_work_under_torch_compile():
    x = make_inputs([5, 1, 12], [2, 1, 0], heads=2, dim=16, device=DEVICE)

    def f(q, k, v, pos_bias, time_bias):
        h = hstu_attention(
            q,
            k,
            v,
            x.offsets,
            x.timestamps,
            x.num_candidates,
            pos_bias,
            time_bias,
            scale=0.5,
            kernel="triton",
        )
        c = cama_attention(
            q,
            k,
            v,
            x.offsets,
            x.timestamps,
            x.actions,
            x.num_candidates,
            num_channels=2,
            scale=0.5,
            kernel="triton",
        )
        return (h * c).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    leaves = x.leaves()
    eager_grads = torch.autograd.grad(f(*leaves), leaves)
    comp_grads = torch.autograd.grad(compiled(*leaves), leaves)
    for g, r in zip(comp_grads, eager_grads):
        torch.testing.assert_close(g, r)


def test_custom_ops_pass_opcheck():
    from recsys_lab.kernels import ops

    x = make_inputs([5, 0, 3], [1, 0, 1], heads=2, dim=16, device=DEVICE)
    hstu_args = (x.q, x.k, x.v, x.offsets, x.timestamps, x.num_candidates, x.pos_bias, x.time_bias, 0.5)
    cama_args = (x.q, x.k, x.v, x.offsets, x.timestamps, x.actions, x.num_candidates, 2, 0.5)
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(ops._hstu_fwd, hstu_args, test_utils=tests)
    torch.library.opcheck(ops._cama_fwd, cama_args, test_utils=tests)


def test_triton_rejects_float64():
    x = make_inputs([3], [0], heads=2, dim=16, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="float64"):
        x.hstu(scale=1.0, kernel=Kernel.TRITON)
