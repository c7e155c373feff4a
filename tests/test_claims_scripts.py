"""Pieces of the convergence-study scripts (issue 13) that need no training: the ExFM staleness
study's stratified paired bootstrap over saved stream predictions, and the reproducing command."""

from __future__ import annotations

import statistics
import sys

import pytest
import torch

from recsys_lab.metrics import auc
from scripts.claims_exfm import stream_bootstrap
from scripts.claims_runs import command_line


def fake_stream(run_dir, signal: float, seed: int = 0) -> dict:
    """Saved predictions of a VM stage (two verticals × two days) whose AUC grows with ``signal``;
    the labels depend only on the day and vertical, so every run shares them."""
    out = {}
    for v in (1, 2):
        for day in (11, 12):
            g = torch.Generator().manual_seed(100 * v + day)
            y = (torch.rand(800, generator=g) < 0.3).double()
            noise = torch.randn(800, generator=torch.Generator().manual_seed(seed * 1000 + 100 * v + day))
            probs = torch.sigmoid(signal * (2 * y - 1) + noise).double()
            f = run_dir / f"vm{v}" / "predictions" / f"day{day}.pt"
            f.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"probs": probs, "labels": y}, f)
            out[(v, day)] = (probs, y)
    return out


def test_stream_bootstrap_is_the_mean_day_auc_difference_with_an_interval(tmp_path):
    strong = fake_stream(tmp_path / "strong", signal=1.0, seed=1)
    weak = fake_stream(tmp_path / "weak", signal=0.3, seed=2)
    m, lo, hi = stream_bootstrap(tmp_path / "strong", tmp_path / "weak", replicates=100)
    expected = statistics.fmean(auc(*strong[k]) - auc(*weak[k]) for k in strong)  # as stream/auc
    assert m == pytest.approx(expected)
    assert 0 < lo < m < hi
    m0, lo0, hi0 = stream_bootstrap(tmp_path / "weak", tmp_path / "weak", replicates=20)
    assert m0 == lo0 == hi0 == 0.0  # a run against itself: no difference on any resample


def test_stream_bootstrap_refuses_runs_on_different_rows(tmp_path):
    fake_stream(tmp_path / "a", signal=1.0)
    fake_stream(tmp_path / "b", signal=1.0)
    (tmp_path / "b" / "vm2" / "predictions" / "day12.pt").unlink()
    with pytest.raises(RuntimeError, match="different"):
        stream_bootstrap(tmp_path / "a", tmp_path / "b", replicates=10)
    with pytest.raises(FileNotFoundError, match="save_predictions"):
        stream_bootstrap(tmp_path / "a", tmp_path / "missing", replicates=10)


def test_command_line_leaves_out_where_the_outputs_live(monkeypatch):
    argv = ["x.py", "--seeds", "0", "1", "--out", "/somewhere", "--report-only", "--deltas", "1", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    assert command_line("claims_exfm.py") == "python scripts/claims_exfm.py --seeds 0 1 --deltas 1 3"
    monkeypatch.setattr(sys, "argv", ["x.py", "--out=/somewhere", "--epochs", "4"])
    assert command_line("claims_mixers.py") == "python scripts/claims_mixers.py --epochs 4"
