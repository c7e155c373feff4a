"""CTR metrics: AUC, LogLoss, GAUC, normalised entropy (NE) and calibration.

With probabilities ``p`` and 0/1 labels ``y`` over ``n`` impressions (``P`` positives, ``N`` negatives):

- AUC: P(p_pos > p_neg), ties count 1/2; ``(sum of positives' ranks - P(P+1)/2) / (P N)`` (Mann-Whitney U).
- LogLoss: ``-1/n sum[y log p + (1 - y) log(1 - p)]``, with ``p`` clipped to ``[1e-7, 1 - 1e-7]``.
- GAUC: ``sum_u n_u AUC_u / sum_u n_u`` over users ``u`` whose impressions hold both classes.
- NE: ``LogLoss / H(r)`` with base rate ``r = mean(y)``, ``H(r) = -r log r - (1 - r) log(1 - r)``.
- Calibration: ``sum(p) / sum(y)``, predicted over observed CTR (1.0 = calibrated).

Undefined values (one class only, no data, no positives) are NaN, never an exception.

Functional forms take tensors and return Python floats. The torchmetrics classes (``AUC``,
``LogLoss``, ``GAUC``, ``NormalizedEntropy``, ``Calibration``) accumulate over batches and, under
DDP, over ranks: AUC and GAUC gather every prediction (``cat`` states, exact on float32
probabilities), the others keep float64 sums (O(1) memory). ``CTRMetrics`` bundles them for one
split of a LightningModule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

_EPS = 1e-7


# --------------------------------------------------------------------------------------------
# Input checks and shared maths
# --------------------------------------------------------------------------------------------


def _check_inputs(
    name: str, probs: Tensor, labels: Tensor, groups: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate ``probs``/``labels``(/``groups``) of equal shape and return them flattened, detached.

    Raises ValueError on a shape mismatch, on probabilities or labels outside [0, 1] (NaN included:
    logits passed instead of probabilities are the usual cause) and on non-integer groups.
    """
    if probs.shape != labels.shape:
        raise ValueError(
            f"{name}: probs has shape {tuple(probs.shape)} but labels has shape {tuple(labels.shape)}; "
            "both must be [B] (one probability and one 0/1 label per impression)."
        )
    if groups is not None:
        if groups.shape != probs.shape:
            raise ValueError(
                f"{name}: groups has shape {tuple(groups.shape)} but probs has shape {tuple(probs.shape)}; "
                "groups must be [B] (one user id per impression)."
            )
        if groups.is_floating_point() or groups.is_complex():
            raise ValueError(f"{name}: groups must be integer ids (e.g. int64 user ids), got {groups.dtype}.")
        groups = groups.detach().flatten()
    p = probs.detach().flatten()
    y = labels.detach().flatten()
    if p.numel():
        # One fused check per tensor; NaN fails both comparisons.
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise ValueError(
                f"{name}: probs must be probabilities in [0, 1] (got min {float(p.min()):.4g}, "
                f"max {float(p.max()):.4g}, NaN: {bool(p.isnan().any())}). Pass sigmoid(logits), not logits."
            )
        if not bool(((y >= 0) & (y <= 1)).all()):
            raise ValueError(
                f"{name}: labels must be 0/1 (got min {float(y.min()):.4g}, max {float(y.max()):.4g}, "
                f"NaN: {bool(y.isnan().any())})."
            )
    return p, y, groups


def _bce(p: Tensor, y: Tensor) -> Tensor:
    """Per-example binary cross-entropy in float64, ``p`` clipped to [1e-7, 1 - 1e-7]. [n] -> [n]."""
    p = p.double().clamp(_EPS, 1 - _EPS)
    y = y.double()
    return -(y * p.log() + (1 - y) * (1 - p).log())


def _entropy(rate: float) -> float:
    """Binary entropy (nats) of ``rate``; NaN outside (0, 1)."""
    if not 0 < rate < 1:  # also False for NaN
        return float("nan")
    return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


def _order_key(p: Tensor) -> Tensor:
    """Integer sort key of probabilities ``p`` in [0, 1]: [n] float -> [n] int64, same order and ties.

    The IEEE bit pattern of a non-negative float is monotone in its value, and integer sorts are
    several times faster than float sorts on CPU. Half precision is widened exactly to float32.
    """
    if p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()
    p = p.abs().contiguous()  # maps -0.0 (which passes p >= 0) to +0.0, so both tie as zero
    if p.dtype == torch.float32:
        return p.view(torch.int32).long()  # in [0, 0x3F800000]
    return p.double().view(torch.int64)


def _sorted_group_auc(p: Tensor, y: Tensor, new_group: Tensor) -> tuple[Tensor, Tensor]:
    """AUC of every group of rows already sorted by (group, prob).

    Args:
        p: [n] probabilities (or an order key of them), ascending within each group.
        y: [n] float64 0/1 labels, same order.
        new_group: [n] bool, True on the first row of each group (``new_group[0]`` is True).

    Returns:
        ``(auc [G], size [G])`` in float64; ``auc`` is NaN for groups with one class.
    """
    n = p.numel()
    # A tie segment is a run of equal probabilities inside one group; segments never cross groups.
    new_tie = new_group.clone()
    new_tie[1:] |= p[1:] != p[:-1]
    tie_start = torch.nonzero(new_tie).squeeze(1)  # [T] first row of each tie segment
    tie_end = torch.cat([tie_start[1:], tie_start.new_tensor([n])])  # [T] one past the last row
    tie_id = torch.cumsum(new_tie, 0) - 1  # [n]
    grp_start = torch.nonzero(new_group).squeeze(1)  # [G]
    grp_end = torch.cat([grp_start[1:], grp_start.new_tensor([n])])  # [G]
    grp_id = torch.cumsum(new_group, 0) - 1  # [n]
    n_groups = grp_start.numel()

    # Rows start..end-1 hold 1-based global positions start+1..end: their mean is the tied rank.
    tie_rank = (tie_start + tie_end + 1).double() / 2  # [T]
    rank = tie_rank[tie_id] - grp_start[grp_id].double()  # [n] 1-based rank within the group

    size = (grp_end - grp_start).double()  # [G]
    # Segment sums per group (exact: each group's sum is small, unlike a global cumsum).
    n_pos = torch.zeros(n_groups, dtype=torch.float64, device=p.device).index_add_(0, grp_id, y)
    rank_pos = torch.zeros(n_groups, dtype=torch.float64, device=p.device).index_add_(0, grp_id, rank * y)
    n_neg = size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    u = rank_pos - n_pos * (n_pos + 1) / 2
    auc = torch.where(valid, u / (n_pos * n_neg).clamp_min(1), torch.full_like(u, float("nan")))
    return auc, size


# --------------------------------------------------------------------------------------------
# Functional forms
# --------------------------------------------------------------------------------------------


def auc(probs: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve, ties counted as half (Mann-Whitney U). NaN if one class only.

    Labels above 0.5 count as positives.
    """
    p, y, _ = _check_inputs("auc", probs, labels)
    if p.numel() == 0:
        return float("nan")
    key, order = torch.sort(_order_key(p))
    y = (y[order] > 0.5).double()
    new_group = torch.zeros(p.numel(), dtype=torch.bool, device=p.device)
    new_group[0] = True  # one group: all rows
    return float(_sorted_group_auc(key, y, new_group)[0][0])


def bootstrap(
    metric: Callable[[Tensor, Tensor], float],
    probs: Tensor,
    labels: Tensor,
    replicates: int = 1000,
    seed: int = 0,
) -> Tensor:
    """``metric`` of several runs' predictions on the same bootstrap resamples of the test rows.

    Resample ``k`` draws ``n`` row indices uniformly with replacement (``torch.randint`` from a
    generator seeded with ``seed``, one draw per resample in order) and every run is scored on
    those rows, so differences between runs can be taken resample by resample (a paired
    bootstrap). For ``metric=auc`` each resample is a weighting of the rows, so one sort per run
    serves them all (same values as ``auc`` on the drawn rows, to rounding); any other
    ``metric(probs, labels) -> float`` is called once per resample and run.

    Args:
        metric: e.g. :func:`auc`, :func:`logloss`, :func:`calibration`.
        probs: ``[R, n]`` probabilities of ``R`` runs on the same ``n`` rows (or ``[n]``).
        labels: ``[n]`` 0/1 labels (above 0.5 counts as positive).
        replicates: number of resamples ``K``.
        seed: seed of the resampling.

    Returns:
        float64 ``[K, R]``: the metric of run ``r`` on resample ``k`` (NaN where it is undefined,
        e.g. AUC on a resample holding one class only).
    """
    probs = probs.reshape(1, -1) if probs.dim() == 1 else probs
    if probs.dim() != 2 or probs.shape[1] != labels.numel():
        raise ValueError(
            f"bootstrap: probs has shape {tuple(probs.shape)} but labels has {labels.numel()} rows; "
            "give probs as [runs, rows] (or [rows]) with one label per row."
        )
    if replicates < 1:
        raise ValueError(f"bootstrap needs replicates >= 1, got {replicates}")
    labels = labels.reshape(-1)
    for r in range(probs.shape[0]):
        _check_inputs("bootstrap", probs[r], labels)
    n = labels.numel()
    gen = torch.Generator().manual_seed(seed)
    draws = [torch.randint(n, (n,), generator=gen) for _ in range(replicates)]  # K x [n] row indices
    out = torch.empty(replicates, probs.shape[0], dtype=torch.float64)
    if metric is not auc:
        for k, idx in enumerate(draws):
            idx = idx.to(labels.device)
            for r in range(probs.shape[0]):
                out[k, r] = metric(probs[r][idx], labels[idx])
        return out
    counts = torch.stack([torch.bincount(idx, minlength=n) for idx in draws]).double()  # [K, n] draws per row
    y = (labels.cpu() > 0.5).double()
    for r in range(probs.shape[0]):
        key, order = torch.sort(_order_key(probs[r].detach().cpu()))
        group = torch.zeros(n, dtype=torch.long)
        group[1:] = (key[1:] != key[:-1]).long().cumsum(0)  # tie groups, in ascending order
        w = counts[:, order]  # [K, n]
        pos = torch.zeros(replicates, int(group[-1]) + 1, dtype=torch.float64)
        neg = torch.zeros_like(pos)
        pos.index_add_(1, group, w * y[order])
        neg.index_add_(1, group, w * (1 - y[order]))
        below = neg.cumsum(1) - neg  # [K, G] negatives ranked strictly below each tie group
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        u = (pos * (below + 0.5 * neg)).sum(1)
        out[:, r] = torch.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg).clamp_min(1), float("nan"))
    return out


def bootstrap_interval(
    metric: Callable[[Tensor, Tensor], float],
    probs: Tensor,
    labels: Tensor,
    baseline: Tensor | None = None,
    replicates: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of :func:`bootstrap` over test rows (test-sampling noise) of
    ``metric(probs, labels)`` — or, with ``baseline``, of the paired difference ``metric(probs) −
    metric(baseline)`` on the same resampled rows (far tighter than two separate intervals when the
    two predictions are correlated).

    ``probs``, ``baseline``, ``labels``: ``[n]``. Returns ``(low, high)``; resamples where the
    metric is NaN (one class only) are dropped.
    """
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_interval needs 0 < level < 1, got {level}")
    if probs.shape != labels.shape or (baseline is not None and baseline.shape != labels.shape):
        raise ValueError(
            f"bootstrap_interval: probs {tuple(probs.shape)}, baseline "
            f"{None if baseline is None else tuple(baseline.shape)} and labels {tuple(labels.shape)} must match"
        )
    runs = probs.reshape(1, -1) if baseline is None else torch.stack([probs, baseline])  # [R, n]
    values = bootstrap(metric, runs, labels, replicates, seed)  # [K, R]
    q = values[:, 0] if baseline is None else values[:, 0] - values[:, 1]  # [K]
    q = q[~q.isnan()]
    if q.numel() == 0:
        return float("nan"), float("nan")
    lo, hi = torch.quantile(q, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(lo), float(hi)


def gauc(probs: Tensor, labels: Tensor, groups: Tensor) -> float:
    """Group (user) AUC: per-group AUC weighted by the group's number of impressions.

    Groups whose labels are all one class are skipped; NaN if no group has both classes.
    Vectorised: one sort by (group, prob) and segment sums, no loop over groups.

    Args:
        probs: [n] probabilities.
        labels: [n] 0/1 labels (above 0.5 counts as positive).
        groups: [n] integer group ids (any values, need not be contiguous or sorted).
    """
    p, y, g = _check_inputs("gauc", probs, labels, groups)
    assert g is not None
    if p.numel() == 0:
        return float("nan")
    key = _order_key(p)  # [n] int64, same order and ties as p
    g = g.long()
    g = g - g.min()
    if p.dtype == torch.float32 and int(g.max()) < 2**31:
        # One integer sort by (group, prob): group in the high 32 bits, prob's bits (< 2^30) below.
        combined, order = torch.sort((g << 32) | key)
        g, key = combined >> 32, combined & 0xFFFFFFFF
    else:
        # Lexicographic sort by (group, prob): stable sort by prob, then stable sort by group.
        order = torch.argsort(key, stable=True)
        order = order[torch.argsort(g[order], stable=True)]
        g, key = g[order], key[order]
    new_group = torch.ones(g.numel(), dtype=torch.bool, device=g.device)
    new_group[1:] = g[1:] != g[:-1]
    aucs, size = _sorted_group_auc(key, (y[order] > 0.5).double(), new_group)
    valid = ~aucs.isnan()
    weight = size[valid].sum()
    if weight == 0:
        return float("nan")
    return float((aucs[valid] * size[valid]).sum() / weight)


def logloss(probs: Tensor, labels: Tensor) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [1e-7, 1 - 1e-7]). NaN if empty."""
    p, y, _ = _check_inputs("logloss", probs, labels)
    return float(_bce(p, y).mean())


def base_entropy(labels: Tensor) -> float:
    """Entropy (nats) of the base rate: the LogLoss of always predicting the mean label."""
    return _entropy(float(labels.double().mean()))


def normalized_entropy(probs: Tensor, labels: Tensor) -> float:
    """LogLoss divided by the entropy of the base rate (He et al., 2014). < 1 beats the prior."""
    return logloss(probs, labels) / base_entropy(labels)


def calibration(probs: Tensor, labels: Tensor) -> float:
    """Predicted CTR divided by observed CTR (1.0 = calibrated). NaN if there is no positive."""
    p, y, _ = _check_inputs("calibration", probs, labels)
    observed = float(y.double().sum())
    if observed == 0:
        return float("nan")
    return float(p.double().sum()) / observed


# --------------------------------------------------------------------------------------------
# torchmetrics forms
# --------------------------------------------------------------------------------------------
# States are replaced, never updated in place, so updates under torch.inference_mode (Lightning's
# validation loop) leave no inference tensor that a later in-place op would trip over.


def _nan(device: torch.device) -> Tensor:
    return torch.tensor(float("nan"), dtype=torch.float64, device=device)


def _f64_zero() -> Tensor:
    return torch.tensor(0.0, dtype=torch.float64)


class _GatheredMetric(Metric):
    """Base of metrics that keep every row, in ``cat`` list states of fixed dtypes.

    Rows are stored as float32 probabilities (half precision widens exactly; float64 is rounded),
    uint8 labels (``label > 0.5``) and int64 group ids: 5 bytes a row, 13 with groups.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _cat_dtypes: ClassVar[dict[str, torch.dtype]] = {"probs": torch.float32, "labels": torch.uint8}

    def __init__(self) -> None:
        super().__init__()
        for name in self._cat_dtypes:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _append(self, **rows: Tensor) -> None:
        for name, value in rows.items():
            getattr(self, name).append(value.to(self._cat_dtypes[name]))

    def _gathered(self) -> list[Tensor]:
        """Every state concatenated, after the DDP gather: [n] each, in ``_cat_dtypes`` order."""
        return [
            dim_zero_cat(state) if len(state) else torch.empty(0, dtype=dtype, device=self.device)
            for state, dtype in ((getattr(self, name), dtype) for name, dtype in self._cat_dtypes.items())
        ]

    def sync(
        self,
        dist_sync_fn: Callable | None = None,
        process_group: Any | None = None,
        should_sync: bool = True,
        distributed_available: Callable | None = None,
    ) -> None:
        """Gather states across ranks; a rank without rows sends empty tensors of the right dtypes.

        (torchmetrics stands in an empty tensor of the metric's float dtype for an empty list state;
        gathered with other ranks' uint8 labels or int64 group ids, that aborts the collective.)
        """
        for name, dtype in self._cat_dtypes.items():
            state = getattr(self, name)
            if isinstance(state, list) and not state:
                state.append(torch.empty(0, dtype=dtype, device=self.device))
        super().sync(dist_sync_fn, process_group, should_sync, distributed_available)


class AUC(_GatheredMetric):
    """Exact AUC over every prediction seen (all ranks under DDP). Memory grows with the data."""

    probs: list[Tensor]
    labels: list[Tensor]

    def update(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1."""
        p, y, _ = _check_inputs(type(self).__name__, probs, labels)
        self._append(probs=p, labels=y > 0.5)

    def compute(self) -> Tensor:
        """Scalar float64 AUC; NaN with no data or one class only."""
        p, y = self._gathered()
        return torch.tensor(auc(p, y.float()), dtype=torch.float64, device=self.device)


class GAUC(_GatheredMetric):
    """Exact impression-weighted per-group AUC over every prediction seen (all ranks under DDP).

    The same group id on different ranks or batches is one group.
    """

    _cat_dtypes: ClassVar[dict[str, torch.dtype]] = {
        "probs": torch.float32,
        "labels": torch.uint8,
        "groups": torch.int64,
    }

    probs: list[Tensor]
    labels: list[Tensor]
    groups: list[Tensor]

    def update(self, probs: Tensor, labels: Tensor, groups: Tensor) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1, ``groups`` int [B] user ids."""
        p, y, g = _check_inputs(type(self).__name__, probs, labels, groups)
        assert g is not None
        self._append(probs=p, labels=y > 0.5, groups=g)

    def compute(self) -> Tensor:
        """Scalar float64 GAUC; NaN with no data or no group holding both classes."""
        p, y, g = self._gathered()
        return torch.tensor(gauc(p, y.float(), g), dtype=torch.float64, device=self.device)


class LogLoss(Metric):
    """Mean binary cross-entropy from float64 running sums (O(1) memory)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    sum_loss: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_loss", default=_f64_zero(), dist_reduce_fx="sum")
        self.add_state("count", default=_f64_zero(), dist_reduce_fx="sum")

    def update(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1."""
        p, y, _ = _check_inputs(type(self).__name__, probs, labels)
        self.sum_loss = self.sum_loss + _bce(p, y).sum()
        self.count = self.count + p.numel()

    def compute(self) -> Tensor:
        """Scalar float64 mean logloss; NaN with no data."""
        return self.sum_loss / self.count  # 0/0 = NaN


class NormalizedEntropy(Metric):
    """Mean logloss over the entropy of the accumulated base rate, from float64 running sums."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    sum_loss: Tensor
    count: Tensor
    sum_labels: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_loss", default=_f64_zero(), dist_reduce_fx="sum")
        self.add_state("count", default=_f64_zero(), dist_reduce_fx="sum")
        self.add_state("sum_labels", default=_f64_zero(), dist_reduce_fx="sum")

    def update(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1."""
        p, y, _ = _check_inputs(type(self).__name__, probs, labels)
        self.sum_loss = self.sum_loss + _bce(p, y).sum()
        self.count = self.count + p.numel()
        self.sum_labels = self.sum_labels + y.double().sum()

    def compute(self) -> Tensor:
        """Scalar float64 NE; NaN with no data or a base rate of 0 or 1."""
        count = float(self.count)
        if count == 0:
            return _nan(self.device)
        entropy = _entropy(float(self.sum_labels) / count)
        return torch.tensor(float(self.sum_loss) / count / entropy, dtype=torch.float64, device=self.device)


class Calibration(Metric):
    """Sum of predicted probabilities over sum of labels, from float64 running sums."""

    is_differentiable = False
    higher_is_better = None  # 1.0 is best, in either direction
    full_state_update = False

    sum_probs: Tensor
    sum_labels: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_probs", default=_f64_zero(), dist_reduce_fx="sum")
        self.add_state("sum_labels", default=_f64_zero(), dist_reduce_fx="sum")

    def update(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1."""
        p, y, _ = _check_inputs(type(self).__name__, probs, labels)
        self.sum_probs = self.sum_probs + p.double().sum()
        self.sum_labels = self.sum_labels + y.double().sum()

    def compute(self) -> Tensor:
        """Scalar float64 calibration; NaN with no positive label."""
        if float(self.sum_labels) == 0:
            return _nan(self.device)
        return self.sum_probs / self.sum_labels


class CTRMetrics(nn.Module):
    """AUC, LogLoss, GAUC, NE and calibration of one split, accumulated over batches and ranks.

    ``compute()`` always returns the same five keys, :attr:`KEYS`; ``gauc`` is NaN when GAUC is
    disabled (``gauc=False``) or no batch carried groups, so log tables keep a fixed set of
    columns. Use one instance per split (val, test) as an attribute of the LightningModule: it is
    an ``nn.Module``, so ``.to(device)`` moves its states. Every rank must call ``compute()``
    (it is a collective under DDP).
    """

    KEYS: tuple[str, ...] = ("auc", "logloss", "gauc", "ne", "calibration")

    def __init__(self, gauc: bool = True) -> None:
        """Args: gauc: also accumulate (probs, labels, groups) for GAUC; costs memory like AUC."""
        super().__init__()
        metrics: dict[str, Metric] = {
            "auc": AUC(),
            "logloss": LogLoss(),
            "ne": NormalizedEntropy(),
            "calibration": Calibration(),
        }
        if gauc:
            metrics["gauc"] = GAUC()
        self.metrics = nn.ModuleDict(metrics)
        self._with_groups: bool | None = None  # whether this rank's batches carry groups

    @property
    def gauc_enabled(self) -> bool:
        return "gauc" in self.metrics

    def update(self, probs: Tensor, labels: Tensor, groups: Tensor | None = None) -> None:
        """Add a batch: ``probs`` [B] in [0, 1], ``labels`` [B] 0/1, ``groups`` int [B] user ids or None.

        Either every batch carries groups or none does (mixing them would make GAUC cover only part
        of the split); a mix raises ValueError. Groups are ignored, after a shape check, when GAUC
        is disabled.
        """
        with_groups = groups is not None
        if self._with_groups is not None and with_groups != self._with_groups:
            raise ValueError(
                "CTRMetrics.update: some batches carry groups (user ids) and others do not; pass groups "
                "for every batch of a split or for none. Call reset() between splits or epochs."
            )
        _check_inputs(type(self).__name__, probs, labels, groups)  # once, before any state changes
        self._with_groups = with_groups
        for name, metric in self.metrics.items():
            if name == "gauc":
                if groups is not None:
                    metric.update(probs, labels, groups)
            else:
                metric.update(probs, labels)

    def compute(self) -> dict[str, float]:
        """``{"auc", "logloss", "gauc", "ne", "calibration"}`` as Python floats (NaN where undefined)."""
        out = {"gauc": float("nan")}
        for name, metric in self.metrics.items():
            with warnings.catch_warnings():
                # A split without groups (or a rank without data) leaves GAUC un-updated; it still
                # takes part in the DDP sync and returns NaN, so the warning is noise.
                warnings.filterwarnings("ignore", message=".*was called before the ``update``.*")
                out[name] = float(metric.compute())
        return {key: out[key] for key in self.KEYS}

    def reset(self) -> None:
        """Clear every state (call at the end of each epoch)."""
        for metric in self.metrics.values():
            metric.reset()
        self._with_groups = None
