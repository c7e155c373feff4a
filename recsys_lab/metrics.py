"""CTR metrics: AUC, LogLoss, GAUC, normalised entropy (NE) and calibration.

Functional forms take probabilities and 0/1 labels as tensors and return Python floats; the
torchmetrics forms below accumulate over batches (and over ranks under DDP).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_EPS = 1e-7


def auc(probs: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve, ties counted as half (Mann-Whitney U). NaN if one class only."""
    probs = probs.detach().flatten().double()
    labels = labels.detach().flatten().double()
    n_pos = float(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(probs)
    return float((ranks[labels > 0.5].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks of ``x`` with ties given their average rank."""
    sorted_x, order = torch.sort(x)
    n = x.numel()
    # Group equal values: each group's ranks are averaged.
    new_group = torch.ones(n, dtype=torch.bool, device=x.device)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1  # [n]
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    n_groups = int(group[-1]) + 1 if n else 0
    sums = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, group, positions)
    counts = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(
        0, group, torch.ones_like(positions)
    )
    ranks = torch.empty(n, dtype=torch.float64, device=x.device)
    ranks[order] = (sums / counts)[group]
    return ranks


def logloss(probs: Tensor, labels: Tensor) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [1e-7, 1 - 1e-7])."""
    p = probs.detach().flatten().double().clamp(_EPS, 1 - _EPS)
    y = labels.detach().flatten().double()
    return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())


def base_entropy(labels: Tensor) -> float:
    """Entropy (nats) of the base rate: the LogLoss of always predicting the mean label."""
    r = float(labels.double().mean())
    if r <= 0 or r >= 1:
        return float("nan")
    return -(r * math.log(r) + (1 - r) * math.log(1 - r))


def normalized_entropy(probs: Tensor, labels: Tensor) -> float:
    """LogLoss divided by the entropy of the base rate (He et al., 2014). < 1 beats the prior."""
    return logloss(probs, labels) / base_entropy(labels)


def calibration(probs: Tensor, labels: Tensor) -> float:
    """Predicted CTR divided by observed CTR (1.0 = calibrated)."""
    return float(probs.double().sum() / labels.double().sum())
