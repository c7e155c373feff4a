"""Shared pieces of the claim tests: full-batch training of any ``inputs -> logit`` module and
test AUC, with fixed seeds so every claim test is deterministic on one thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from recsys_lab.metrics import auc

torch.set_num_threads(1)


def fit(
    forward: Callable[[Tensor], Tensor],
    params: Iterable[nn.Parameter],
    labels: Tensor,
    steps: int,
    lr: float = 1e-2,
    extra_loss: Callable[[], Tensor] | None = None,
    rows: Tensor | None = None,
) -> list[float]:
    """Full-batch Adam on BCE-with-logits of ``forward(rows)`` against ``labels`` for ``steps``
    steps (``rows`` defaults to all indices). ``forward`` maps int64 row indices ``[B]`` to logits
    ``[B]``. Returns the loss of every step."""
    idx = torch.arange(labels.numel()) if rows is None else rows
    opt = torch.optim.Adam(list(params), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(forward(idx), labels[idx])
        if extra_loss is not None:
            loss = loss + extra_loss()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def held_out_auc(forward: Callable[[Tensor], Tensor], labels: Tensor, rows: Tensor) -> float:
    """AUC of ``sigmoid(forward(rows))`` against ``labels[rows]``."""
    return auc(torch.sigmoid(forward(rows)), labels[rows])


held_out_auc.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def split(n: int, test_fraction: float = 0.3, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random split of ``range(n)`` into (train, test) index tensors."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * (1 - test_fraction))
    return perm[:cut], perm[cut:]
