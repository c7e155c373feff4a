"""Metrics against brute-force definitions, hand-computed values and their own accumulation."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recsys_lab.metrics import (
    AUC,
    GAUC,
    Calibration,
    CTRMetrics,
    LogLoss,
    NormalizedEntropy,
    auc,
    base_entropy,
    calibration,
    gauc,
    logloss,
    normalized_entropy,
)

# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def brute_auc(probs: list[float], labels: list[float]) -> float:
    """O(n^2) pairwise count: a positive above a negative scores 1, a tie 1/2."""
    pos = [p for p, y in zip(probs, labels) if y > 0.5]
    neg = [p for p, y in zip(probs, labels) if y <= 0.5]
    if not pos or not neg:
        return float("nan")
    score = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return score / (len(pos) * len(neg))


def brute_gauc(probs: list[float], labels: list[float], groups: list[int]) -> float:
    """Loop over users: AUC of each user with both classes, weighted by its impressions."""
    num = den = 0.0
    for u in set(groups):
        idx = [i for i, g in enumerate(groups) if g == u]
        a = brute_auc([probs[i] for i in idx], [labels[i] for i in idx])
        if not math.isnan(a):
            num += a * len(idx)
            den += len(idx)
    return num / den if den else float("nan")


def random_data(n: int, seed: int, levels: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities on a coarse grid (many ties) and labels drawn from them."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.randint(0, levels + 1, (n,), generator=gen).float() / levels
    labels = (torch.rand(n, generator=gen) < probs.clamp(0.1, 0.9)).float()
    return probs, labels


# --------------------------------------------------------------------------------------------
# AUC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "labels", "expected"),
    [
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
        ([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1], 0.875),  # one tied pair counts 1/2: 3.5 / 4
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0),
        ([0.3, 0.1, 0.3], [1, 0, 0], 0.75),
    ],
)
def test_auc_hand_computed(probs: list[float], labels: list[float], expected: float) -> None:
    assert auc(torch.tensor(probs), torch.tensor(labels, dtype=torch.float32)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_auc_matches_pairwise_count_with_ties(seed: int, dtype: torch.dtype) -> None:
    probs, labels = random_data(300, seed)
    probs = probs.to(dtype)
    expected = brute_auc(probs.tolist(), labels.tolist())
    assert auc(probs, labels) == pytest.approx(expected, abs=1e-12)


def test_auc_continuous_probs() -> None:
    gen = torch.Generator().manual_seed(7)
    probs = torch.rand(400, generator=gen)
    labels = (torch.rand(400, generator=gen) < probs).float()
    assert auc(probs, labels) == pytest.approx(brute_auc(probs.tolist(), labels.tolist()), abs=1e-12)


def test_auc_separated_and_reversed() -> None:
    labels = torch.cat([torch.zeros(50), torch.ones(50)])
    probs = torch.linspace(0, 1, 100)
    assert auc(probs, labels) == 1.0
    assert auc(1 - probs, labels) == 0.0
    assert auc(torch.full((100,), 0.3), labels) == 0.5


def test_auc_negative_zero_ties_with_zero() -> None:
    assert auc(torch.tensor([-0.0, 0.0]), torch.tensor([1.0, 0.0])) == 0.5


def test_auc_one_class_or_empty_is_nan() -> None:
    assert math.isnan(auc(torch.rand(10), torch.ones(10)))
    assert math.isnan(auc(torch.rand(10), torch.zeros(10)))
    assert math.isnan(auc(torch.empty(0), torch.empty(0)))


# --------------------------------------------------------------------------------------------
# GAUC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "id_scale", [20, 2**40], ids=["small-ids", "huge-ids"]
)  # huge ids take the two-sort path
def test_gauc_matches_per_user_loop(seed: int, id_scale: int) -> None:
    n = 400
    probs, labels = random_data(n, seed, levels=5)
    gen = torch.Generator().manual_seed(100 + seed)
    users = torch.randint(0, 40, (n,), generator=gen)
    groups = users * (id_scale // 20) - 7  # non-contiguous, negative ids included
    expected = brute_gauc(probs.tolist(), labels.tolist(), groups.tolist())
    assert gauc(probs, labels, groups) == pytest.approx(expected, abs=1e-12)
    assert gauc(probs.double(), labels, groups.int() if id_scale == 20 else groups) == pytest.approx(
        expected, abs=1e-12
    )


def test_gauc_hand_computed() -> None:
    # user 1: AUC 1.0 over 2 impressions; user 2: AUC 0.5 (a tie) over 3; user 3 (one class) skipped.
    probs = torch.tensor([0.9, 0.1, 0.4, 0.4, 0.2, 0.7, 0.8])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([1, 1, 2, 2, 2, 3, 3])
    user2 = brute_auc([0.4, 0.4, 0.2], [1, 0, 0])  # (0.5 + 1) / 2 = 0.75
    assert user2 == 0.75
    assert gauc(probs, labels, groups) == pytest.approx((2 * 1.0 + 3 * 0.75) / 5)


def test_gauc_single_group_equals_auc() -> None:
    probs, labels = random_data(200, 3)
    assert gauc(probs, labels, torch.zeros(200, dtype=torch.long)) == pytest.approx(auc(probs, labels))


def test_gauc_no_qualifying_group_is_nan() -> None:
    probs = torch.rand(6)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    assert math.isnan(gauc(probs, labels, groups))
    assert math.isnan(gauc(torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.long)))


def test_gauc_rejects_float_groups() -> None:
    with pytest.raises(ValueError, match="integer"):
        gauc(torch.rand(4), torch.ones(4), torch.zeros(4))


# --------------------------------------------------------------------------------------------
# LogLoss, NE, calibration
# --------------------------------------------------------------------------------------------


def test_logloss_hand_formula() -> None:
    probs = [0.9, 0.2, 0.6, 0.05]
    labels = [1.0, 0.0, 0.0, 1.0]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.05)) / 4
    assert logloss(torch.tensor(probs), torch.tensor(labels)) == pytest.approx(expected, rel=1e-6)


def test_logloss_clips_certain_mistakes() -> None:
    assert logloss(torch.tensor([0.0]), torch.tensor([1.0])) == pytest.approx(-math.log(1e-7))
    assert logloss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])) == pytest.approx(0.0, abs=1e-6)


def test_ne_and_calibration_of_the_base_rate_are_one() -> None:
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    probs = torch.full_like(labels, float(labels.mean()))
    assert base_entropy(labels) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert normalized_entropy(probs, labels) == pytest.approx(1.0)
    assert calibration(probs, labels) == pytest.approx(1.0)


def test_ne_and_calibration_degenerate_cases_are_nan() -> None:
    assert math.isnan(normalized_entropy(torch.rand(5), torch.zeros(5)))
    assert math.isnan(calibration(torch.rand(5), torch.zeros(5)))
    assert calibration(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [auc, logloss, normalized_entropy, calibration])
def test_functional_shape_mismatch_raises(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="shape"):
        fn(torch.rand(8, 1), torch.ones(8))


@pytest.mark.parametrize("cls", [AUC, LogLoss, NormalizedEntropy, Calibration])
def test_metric_shape_mismatch_raises(cls: type[AUC | LogLoss | NormalizedEntropy | Calibration]) -> None:
    with pytest.raises(ValueError, match="shape"):
        cls().update(torch.rand(8), torch.ones(7))


def test_groups_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="groups has shape"):
        gauc(torch.rand(8), torch.ones(8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="groups has shape"):
        GAUC().update(torch.rand(8), torch.ones(8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="groups has shape"):
        CTRMetrics().update(torch.rand(8), torch.ones(8), torch.zeros(4, dtype=torch.long))


def test_logits_and_bad_labels_raise() -> None:
    with pytest.raises(ValueError, match="sigmoid"):
        auc(torch.tensor([-1.0, 2.0]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="sigmoid"):
        LogLoss().update(torch.tensor([0.5, float("nan")]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        CTRMetrics().update(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 2.0]))


# --------------------------------------------------------------------------------------------
# torchmetrics classes: accumulation and merging
# --------------------------------------------------------------------------------------------


def split_data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    probs, labels = random_data(n, seed, levels=10)
    groups = torch.randint(0, 30, (n,), generator=torch.Generator().manual_seed(seed + 1)) * 11
    return probs, labels, groups


def expected_all(probs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
    return {
        "auc": auc(probs, labels),
        "logloss": logloss(probs, labels),
        "gauc": gauc(probs, labels, groups),
        "ne": normalized_entropy(probs, labels),
        "calibration": calibration(probs, labels),
    }


def make_metrics() -> dict[str, AUC | LogLoss | GAUC | NormalizedEntropy | Calibration]:
    return {
        "auc": AUC(),
        "logloss": LogLoss(),
        "gauc": GAUC(),
        "ne": NormalizedEntropy(),
        "calibration": Calibration(),
    }


def update(metric, probs, labels, groups) -> None:  # type: ignore[no-untyped-def]
    if isinstance(metric, GAUC):
        metric.update(probs, labels, groups)
    else:
        metric.update(probs, labels)


def test_batched_accumulation_equals_functional() -> None:
    probs, labels, groups = split_data()
    expected = expected_all(probs, labels, groups)
    for name, metric in make_metrics().items():
        for chunk in zip(probs.split(97), labels.split(97), groups.split(97)):  # uneven last batch
            update(metric, *chunk)
        assert float(metric.compute()) == pytest.approx(expected[name], rel=1e-9), name


def test_merging_two_ranks_equals_the_whole() -> None:
    probs, labels, groups = split_data(seed=4)
    expected = expected_all(probs, labels, groups)
    # Rank 0 sees the first 250 rows, rank 1 the rest; the same users appear on both.
    halves = [(t[:250], t[250:]) for t in (probs, labels, groups)]
    for name in expected:
        rank0, rank1 = make_metrics()[name], make_metrics()[name]
        update(rank0, halves[0][0], halves[1][0], halves[2][0])
        update(rank1, halves[0][1], halves[1][1], halves[2][1])
        rank0.merge_state(rank1)
        assert float(rank0.compute()) == pytest.approx(expected[name], rel=1e-9), name


def test_metric_without_data_is_nan() -> None:
    for metric in make_metrics().values():
        with pytest.warns(UserWarning, match="before the ``update``"):
            assert math.isnan(float(metric.compute()))


def test_reset_clears_state() -> None:
    probs, labels, groups = split_data()
    for name, metric in make_metrics().items():
        update(metric, 1 - probs, labels, groups)
        metric.reset()
        update(metric, probs, labels, groups)
        assert float(metric.compute()) == pytest.approx(expected_all(probs, labels, groups)[name], rel=1e-9)


# --------------------------------------------------------------------------------------------
# CTRMetrics
# --------------------------------------------------------------------------------------------


def test_ctr_metrics_keys_and_values() -> None:
    probs, labels, groups = split_data(seed=2)
    metrics = CTRMetrics()
    for chunk in zip(probs.split(128), labels.split(128), groups.split(128)):
        metrics.update(*chunk)
    out = metrics.compute()
    assert list(out) == ["auc", "logloss", "gauc", "ne", "calibration"]
    assert all(isinstance(v, float) for v in out.values())
    assert out == pytest.approx(expected_all(probs, labels, groups), rel=1e-9)


def test_ctr_metrics_without_groups_or_gauc_reports_nan_gauc() -> None:
    probs, labels, groups = split_data(seed=3)
    for metrics, g in [(CTRMetrics(gauc=True), None), (CTRMetrics(gauc=False), groups)]:
        metrics.update(probs, labels, g)
        out = metrics.compute()
        assert set(out) == set(CTRMetrics.KEYS)
        assert math.isnan(out["gauc"])
        assert out["auc"] == pytest.approx(auc(probs, labels))
    assert not CTRMetrics(gauc=False).gauc_enabled


def test_ctr_metrics_rejects_mixed_groups_and_resets() -> None:
    probs, labels, groups = split_data()
    metrics = CTRMetrics()
    metrics.update(probs[:10], labels[:10], groups[:10])
    with pytest.raises(ValueError, match="some batches carry groups"):
        metrics.update(probs[10:], labels[10:])
    metrics.reset()
    metrics.update(probs, labels)  # a fresh epoch may differ
    assert math.isnan(metrics.compute()["gauc"])


def test_ctr_metrics_invalid_batch_leaves_state_untouched() -> None:
    probs, labels, groups = split_data()
    metrics = CTRMetrics()
    metrics.update(probs, labels, groups)
    with pytest.raises(ValueError):
        metrics.update(probs[:5], labels[:4], groups[:5])
    assert metrics.compute() == pytest.approx(expected_all(probs, labels, groups), rel=1e-9)


class _Task(torch.nn.Module):
    """Stand-in for a LightningModule holding one CTRMetrics per split."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.val_metrics = CTRMetrics()
        self.test_metrics = CTRMetrics(gauc=False)


def test_ctr_metrics_as_module_attribute_under_inference_mode() -> None:
    probs, labels, groups = split_data(seed=5)
    task = _Task().to(torch.device("cpu")).double()  # dtype casts must not touch metric states
    assert any(isinstance(m, AUC) for m in task.modules())
    for epoch in range(2):  # the second epoch updates after reset, outside inference mode
        context = torch.inference_mode() if epoch == 0 else torch.no_grad()
        with context:
            for chunk in zip(probs.split(200), labels.split(200), groups.split(200)):
                task.val_metrics.update(*chunk)
                task.test_metrics.update(*chunk)
        assert task.val_metrics.compute() == pytest.approx(expected_all(probs, labels, groups), rel=1e-9)
        task.val_metrics.reset()
        task.test_metrics.reset()


# --------------------------------------------------------------------------------------------
# Real DDP: two CPU processes over gloo
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, queue: mp.SimpleQueue) -> None:  # type: ignore[type-arg]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        probs, labels, groups = split_data(seed=6)
        results = {}
        # Uneven shards (users appear on both ranks), then every row on rank 0 and none on rank 1.
        for case, sl in [("uneven", slice(0, 200) if rank == 0 else slice(200, None)),
                         ("one-empty", slice(None) if rank == 0 else slice(0, 0))]:  # fmt: skip
            metrics = CTRMetrics()
            for chunk in zip(probs[sl].split(64), labels[sl].split(64), groups[sl].split(64)):
                metrics.update(*chunk)
            results[case] = metrics.compute()
        queue.put((rank, results))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or "fork" not in mp.get_all_start_methods(), reason="needs gloo and fork"
)
def test_ctr_metrics_reduce_across_two_gloo_ranks() -> None:
    # fork: the children inherit the imported modules, so the test takes a fraction of a second.
    queue = mp.get_context("fork").SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), queue), nprocs=2, join=True, start_method="fork")
    results = dict(queue.get() for _ in range(2))
    expected = expected_all(*split_data(seed=6))
    for rank in range(2):
        for case in ("uneven", "one-empty"):
            assert results[rank][case] == pytest.approx(expected, rel=1e-9), (rank, case)


def test_bootstrap_interval_covers_the_truth_and_pairs_differences():
    """Over test rows: the AUC interval is about ±1.96 standard errors wide and holds the sample's
    AUC; a paired difference of two correlated predictions gets a much tighter interval."""
    from recsys_lab.metrics import auc, bootstrap_interval

    g = torch.Generator().manual_seed(0)
    n = 4000
    score = torch.randn(n, generator=g)
    y = torch.bernoulli(torch.sigmoid(2 * score), generator=g)
    p = torch.sigmoid(score)
    q = torch.sigmoid(score + 0.3 * torch.randn(n, generator=g))
    lo, hi = bootstrap_interval(auc, p, y, replicates=200)
    assert lo < auc(p, y) < hi and 0.02 < hi - lo < 0.05, (lo, hi)
    dlo, dhi = bootstrap_interval(auc, p, y, baseline=q, replicates=200)
    assert dlo < auc(p, y) - auc(q, y) < dhi and dhi - dlo < 0.5 * (hi - lo), (dlo, dhi)
    with pytest.raises(ValueError, match="must match"):
        bootstrap_interval(auc, p[:5], y)


def test_bootstrap_scores_every_run_on_the_same_resamples():
    """The AUC fast path (one sort per run, resamples as row weights) and the generic path (any
    metric, called on the drawn rows) see the same documented draws."""
    from recsys_lab.metrics import auc, bootstrap, logloss

    g = torch.Generator().manual_seed(3)
    y = (torch.rand(300, generator=g) < 0.3).float()
    probs = torch.stack(
        [torch.rand(300, generator=g), (0.6 * y + torch.rand(300, generator=g)) / 1.6]
    )  # [2, 300]
    probs[0, :50] = 0.5  # ties
    got = bootstrap(auc, probs, y, replicates=20, seed=7)  # [20, 2]
    ll = bootstrap(logloss, probs, y, replicates=20, seed=7)  # [20, 2]
    gen = torch.Generator().manual_seed(7)
    for k in range(20):
        idx = torch.randint(300, (300,), generator=gen)  # the documented draw
        for r in range(2):
            assert got[k, r].item() == pytest.approx(auc(probs[r, idx], y[idx]), abs=1e-9)
            assert ll[k, r].item() == logloss(probs[r, idx], y[idx])
    assert got[:, 1].mean() > got[:, 0].mean() + 0.2
    assert 0.005 < float(got[:, 1].std()) < 0.1  # resampling noise of 300 rows
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap(auc, probs[:, :10], y)
