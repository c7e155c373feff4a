"""The PyTorch references against a brute-force, element-by-element reading of the contract."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recsys_lab.kernels import Kernel, cama_attention, hstu_attention, time_bucket
from tests.kernels.jagged_inputs import make_inputs

LENGTHS = [5, 0, 1, 7]
CANDS = [2, 0, 0, 3]


def _segment_of(offsets: list[int], n: int) -> list[tuple[int, int, int]]:
    """(segment start, segment end, num rows before it) for every row."""
    out = []
    for s, e in itertools.pairwise(offsets):
        out += [(s, e, 0)] * (e - s)
    assert len(out) == n
    return out


def brute_hstu(x, scale: float) -> torch.Tensor:
    q, k, v = x.q.detach().double(), x.k.detach().double(), x.v.detach().double()
    n, h, _ = q.shape
    num_pos, num_time = x.pos_bias.shape[1], x.time_bias.shape[1]
    offs = x.offsets.tolist()
    seg = _segment_of(offs, n)
    cands = dict(zip(offs[:-1], x.num_candidates.tolist()))
    ts = x.timestamps.tolist()
    out = torch.zeros_like(v)
    for i in range(n):
        s, e, _ = seg[i]
        hist_end = e - cands[s]
        for j in range(s, e):
            if j > i or (j >= hist_end and j != i):
                continue
            d = max(ts[i] - ts[j], 0)
            tb = min((1 + d).bit_length() - 1, num_time - 1)  # floor(log2(1+d)), exact
            for hh in range(h):
                a = scale * float(q[i, hh] @ k[j, hh]) + float(
                    x.pos_bias.detach()[hh, min(i - j, num_pos - 1)]
                )
                a += float(x.time_bias.detach()[hh, tb])
                w = a / (1 + math.exp(-a)) / (e - s)
                out[i, hh] += w * v[j, hh]
    return out


def brute_cama(x, num_channels: int, scale: float) -> torch.Tensor:
    q, k, v = x.q.detach().double(), x.k.detach().double(), x.v.detach().double()
    n, h, _ = q.shape
    per = h // num_channels
    offs = x.offsets.tolist()
    seg = _segment_of(offs, n)
    cands = dict(zip(offs[:-1], x.num_candidates.tolist()))
    ts, act = x.timestamps.tolist(), x.actions.tolist()
    out = torch.zeros_like(v)
    for i in range(n):
        s, e, _ = seg[i]
        hist_end = e - cands[s]
        for hh in range(h):
            c = hh // per
            vis = [
                j
                for j in range(s, e)
                if j == s or (j < hist_end and ts[j] < ts[i] and (c == 0 or (act[j] >> (c - 1)) & 1))
            ]
            logits = torch.tensor([scale * float(q[i, hh] @ k[j, hh]) for j in vis], dtype=torch.float64)
            p = torch.softmax(logits, 0)
            out[i, hh] = sum(p[t] * v[j, hh] for t, j in enumerate(vis))
    return out


def test_time_bucket_exact_on_powers_of_two():
    d = torch.tensor([-5, 0, 1, 2, 3, 6, 7, 8, 2**40 - 2, 2**40 - 1, 2**52 - 1, 2**52])
    expected = [min((1 + max(int(x), 0)).bit_length() - 1, 60) for x in d]
    assert time_bucket(d, 61).tolist() == expected
    assert time_bucket(d, 4).max().item() == 3


def test_hstu_reference_matches_brute_force():
    x = make_inputs(LENGTHS, CANDS, heads=2, dim=4, num_pos=4, num_time=3, dtype=torch.float64)
    out = x.hstu(scale=0.7)
    torch.testing.assert_close(out, brute_hstu(x, 0.7))


@pytest.mark.parametrize("num_channels", [1, 2, 4])
def test_cama_reference_matches_brute_force(num_channels):
    x = make_inputs(LENGTHS, CANDS, heads=4, dim=4, num_actions=3, dtype=torch.float64)
    out = x.cama(num_channels=num_channels, scale=0.5)
    torch.testing.assert_close(out, brute_cama(x, num_channels, 0.5))


def _perturb(t: torch.Tensor, row: int) -> torch.Tensor:
    t = t.detach().clone()
    t[row] += 3.0
    return t


def test_hstu_invisible_tokens_do_not_change_output():
    x = make_inputs([6], [3], heads=2, dim=4)
    args = (x.offsets, x.timestamps, x.num_candidates, x.pos_bias, x.time_bias)
    base = hstu_attention(x.q, x.k, x.v, *args, scale=1.0)
    # candidate 4 is invisible to rows 0..3 and to candidate 5; history row 3 to rows 0..2
    for row, unaffected in ((4, [0, 1, 2, 3, 5]), (3, [0, 1, 2])):
        k2, v2 = _perturb(x.k, row), _perturb(x.v, row)
        out = hstu_attention(x.q, k2, v2, *args, scale=1.0)
        torch.testing.assert_close(out[unaffected], base[unaffected])
        changed = [r for r in range(6) if r not in unaffected]
        assert not torch.allclose(out[changed], base[changed])


def test_cama_invisible_tokens_do_not_change_output():
    x = make_inputs([6], [2], heads=2, dim=4)
    ts = torch.tensor([10, 11, 11, 12, 13, 13])
    actions = torch.tensor([0, 1, 0, 1, 0, 0])  # channel 1 sees only keys 1 and 3 (and the sink)
    args = (x.offsets, ts, actions, x.num_candidates)
    base = cama_attention(x.q, x.k, x.v, *args, num_channels=2, scale=1.0)
    # key 2: no action bit (invisible to channel 1 = head 1), same ts as 1 -> row 1/2 can't see it
    k2, v2 = _perturb(x.k, 2), _perturb(x.v, 2)
    out = cama_attention(x.q, k2, v2, *args, num_channels=2, scale=1.0)
    torch.testing.assert_close(out[:, 1], base[:, 1])
    torch.testing.assert_close(out[:3, 0], base[:3, 0])
    assert not torch.allclose(out[3:, 0], base[3:, 0])
    # candidate 4 is invisible to everyone (incl. candidate 5)
    k4, v4 = _perturb(x.k, 4), _perturb(x.v, 4)
    out = cama_attention(x.q, k4, v4, *args, num_channels=2, scale=1.0)
    torch.testing.assert_close(out, base)
    # the sink row sees only itself: perturbing anything else leaves row 0 unchanged
    out = cama_attention(x.q, _perturb(x.k, 3), _perturb(x.v, 3), *args, num_channels=2, scale=1.0)
    torch.testing.assert_close(out[0], base[0])


def test_reference_gradients_flow_to_every_input():
    x = make_inputs([4, 3], [1, 0], heads=2, dim=4)
    out = x.hstu(scale=1.0)
    out.square().sum().backward()
    for t in x.leaves():
        assert t.grad is not None and t.grad.abs().sum() > 0


@pytest.mark.parametrize("op", ["hstu", "cama"])
def test_padded_kernel_matches_reference_with_gradients(op):
    """``Kernel.PADDED`` through the public op: same output and input gradients as the reference,
    with empty, length-1 and all-candidate users, in float64."""
    x = make_inputs([6, 0, 1, 9, 3], [2, 0, 1, 0, 3], heads=4, dim=8, dim_v=6, dtype=torch.float64, seed=3)

    def run(kernel: Kernel):
        for t in x.leaves():
            t.grad = None
        if op == "hstu":
            args = (x.q, x.k, x.v, x.offsets, x.timestamps, x.num_candidates, x.pos_bias, x.time_bias)
            out = hstu_attention(*args, scale=0.3, kernel=kernel)
        else:
            args = (x.q, x.k, x.v, x.offsets, x.timestamps, x.actions, x.num_candidates)
            out = cama_attention(*args, num_channels=2, scale=0.3, kernel=kernel)
        out.square().sum().backward()
        leaves = x.leaves() if op == "hstu" else x.leaves()[:3]
        return out.detach(), [t.grad.clone() for t in leaves]

    ref, ref_grads = run(Kernel.REFERENCE)
    out, grads = run(Kernel("padded"))
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_empty_batch_gives_empty_output_with_grads():
    x = make_inputs([0, 0], [0, 0], heads=2, dim=4)
    out = x.hstu(scale=1.0)
    assert out.shape == (0, 2, 4)
    out.sum().backward()
    assert x.pos_bias.grad is not None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda x: {"offsets": torch.tensor([0, 9, 8])}, "non-decreasing"),
        (lambda x: {"offsets": torch.tensor([0, 3, 7])}, "end at N"),
        (lambda x: {"num_candidates": torch.tensor([4, 0])}, "num_candidates"),
        (lambda x: {"num_candidates": torch.tensor([1, 0, 0])}, r"num_candidates must be \[B=2\]"),
        (lambda x: {"timestamps": x.timestamps.flip(0)}, "timestamps must be non-decreasing"),
        (lambda x: {"timestamps": x.timestamps.float()}, "timestamps must be an int64"),
        (lambda x: {"k": x.k[:, :1]}, "k must have q's shape"),
        (lambda x: {"v": x.v.int()}, "must be a float tensor"),
        (lambda x: {"v": x.v.double()}, "share one dtype"),
        (lambda x: {"num_channels": 3}, "num_channels"),
        (lambda x: {"kernel": "cuda_magic"}, "unknown attention kernel"),
    ],
)
def test_validation_errors_are_clear(change, match):
    x = make_inputs([3, 5], [1, 2], heads=2, dim=4)
    kw = dict(
        q=x.q,
        k=x.k,
        v=x.v,
        offsets=x.offsets,
        timestamps=x.timestamps,
        actions=x.actions,
        num_candidates=x.num_candidates,
        num_channels=2,
        scale=1.0,
        kernel=Kernel.REFERENCE,
    )
    kw.update(change(x))
    with pytest.raises(ValueError, match=match):
        cama_attention(**kw)


def test_hstu_bias_shape_is_checked():
    x = make_inputs([3], [0], heads=2, dim=4)
    with pytest.raises(ValueError, match=r"pos_bias must be \[H=2"):
        hstu_attention(
            x.q, x.k, x.v, x.offsets, x.timestamps, x.num_candidates, x.pos_bias[:1], x.time_bias, scale=1.0
        )


def test_triton_request_without_triton_says_what_to_do(monkeypatch):
    import recsys_lab.kernels as kernels

    monkeypatch.setattr(kernels, "triton_available", lambda: (False, "triton is not installed"))
    x = make_inputs([3], [0], heads=2, dim=4)
    with pytest.raises(RuntimeError, match="use kernel=reference"):
        x.cama(num_channels=1, scale=1.0, kernel="triton")
