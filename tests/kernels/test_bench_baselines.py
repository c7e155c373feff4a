"""The dense-mask baselines of scripts/bench_attention.py compute the same op as the reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_attention.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("op", ["hstu", "cama"])
def test_dense_baseline_matches_reference(bench, op):
    x = bench.make_inputs(3, 24, heads=4, dim=8, dtype=torch.float32, device="cpu", grad=False)
    ref = bench.run_impl(op, "reference", x, 3, 24, num_channels=2)
    dense = bench.run_impl(op, "dense", x, 3, 24, num_channels=2)
    torch.testing.assert_close(dense, ref, atol=1e-5, rtol=1e-4)


def test_skip_reasons_are_given(bench):
    assert "TRITON_INTERPRET" in bench.skip_reason("hstu", "triton", "cpu", "fwd")
    assert "softmax" in bench.skip_reason("hstu", "flex", "cuda", "fwd")
    assert bench.skip_reason("cama", "triton", "cuda", "fwd_bwd") is None
