"""Clients from the data, and the local training every client (and the central reference) runs.

**Clients.** The training rows are grouped by user id (the schema's ``user`` field, i.e.
``Batch.user``): each device holds the behaviour of its users. Users are sorted by their
training click rate and cut into ``num_clients`` contiguous groups whose sizes (in users) follow a
Dirichlet(α) draw (at least one user each). A client therefore sees a narrow band of click rates
(label skew) and a random amount of data (quantity skew); with ``num_clients`` equal to the
number of users each client is exactly one user. Validation and test rows stay pooled on the
server (centralised evaluation).

**Local training** (:func:`train_epochs`) is plain PyTorch: Adam on every parameter, BCE on the
click logit, shuffled mini-batches seeded per call, the same CTR models as central training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from recsys_lab.data.batch import Batch
from recsys_lab.data.datamodule import DataModule, TableSplit
from recsys_lab.metrics import auc, logloss


def collect_split(datamodule: DataModule, split: str) -> TableSplit:
    """One split of any datamodule as columns: its ``split(name)`` if it has one, else its loader's
    batches concatenated (sequence histories are dropped: the federated models are tabular)."""
    getter = getattr(datamodule, "split", None)
    if callable(getter):
        table = getter(split)
        if isinstance(table, TableSplit):
            return table
    loader = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader}.get(
        split, datamodule.test_dataloader
    )()
    batches: list[Batch] = list(loader)
    if not batches:
        raise ValueError(f"federated data: the {split} split of {type(datamodule).__name__} is empty")
    first = batches[0]
    return TableSplit(
        dense=torch.cat([b.dense for b in batches]),
        sparse=torch.cat([b.sparse for b in batches]),
        labels={k: torch.cat([b.labels[k] for b in batches]) for k in first.labels},
        user=None if first.user is None else torch.cat([b.user for b in batches]),  # type: ignore[misc]
    )


def subset(table: TableSplit, rows: Tensor) -> TableSplit:
    """Rows ``rows`` (int64 ``[n]``) of ``table`` as a new split."""
    return TableSplit(
        dense=table.dense[rows],
        sparse=table.sparse[rows],
        labels={k: v[rows] for k, v in table.labels.items()},
        user=None if table.user is None else table.user[rows],
        extras={k: v[rows] for k, v in table.extras.items()},
    )


def partition_by_user(
    table: TableSplit, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[Tensor]:
    """Row indices (int64 ``[n_k]``) of each client; see the module docstring.

    Raises ValueError when the split has no user ids or fewer users than clients.
    """
    if table.user is None:
        raise ValueError(
            "federated data: the training split has no user ids (Batch.user is None); federated runs "
            "partition clients by user, so use a dataset whose schema has a `user` field."
        )
    users, inverse = torch.unique(table.user.long(), return_inverse=True)
    if users.numel() < num_clients:
        raise ValueError(
            f"federated data: {users.numel()} users in the training split but num_clients={num_clients}; "
            "lower fed.num_clients or use more users."
        )
    if alpha <= 0:
        raise ValueError(f"federated data: partition alpha={alpha} must be > 0")
    clicks = torch.zeros(users.numel()).index_add_(0, inverse, table.labels["click"].float())
    counts = torch.bincount(inverse, minlength=users.numel()).float()
    order = torch.argsort(clicks / counts, stable=True)  # users by click rate
    # Dirichlet group sizes in users, each at least one.
    share = torch.from_numpy(rng.dirichlet(np.full(num_clients, float(alpha))))
    extra = users.numel() - num_clients
    sizes = 1 + torch.floor(share * extra).long()
    sizes[torch.argsort(-share)[: users.numel() - int(sizes.sum())]] += 1
    group_of_rank = torch.repeat_interleave(torch.arange(num_clients), sizes)  # [U]
    group_of_user = torch.empty_like(group_of_rank)
    group_of_user[order] = group_of_rank
    group_of_row = group_of_user[inverse]
    return [torch.nonzero(group_of_row == k).squeeze(1) for k in range(num_clients)]


def _bce_soft(logits: Tensor, target: Tensor) -> Tensor:
    """BCE with soft targets in [0, 1]. ``[B], [B] -> []``."""
    return F.binary_cross_entropy_with_logits(logits, target)


def train_epochs(
    model: nn.Module,
    table: TableSplit,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    targets: Tensor | None = None,
) -> float:
    """Train ``model`` on ``table`` (labels ``click``, or soft ``targets`` ``[N]``); mean loss of the last epoch."""
    n = len(table)
    if n == 0:
        return float("nan")
    y = table.labels["click"].float() if targets is None else targets
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    last = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for start in range(0, n, batch_size):
            rows = perm[start : start + batch_size]
            loss = _bce_soft(model(table.batch(rows)), y[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * rows.numel()
        last = total / n
    return last


@torch.no_grad()
def predict(model: nn.Module, table: TableSplit, batch_size: int = 8192) -> Tensor:
    """Click probabilities ``[N]``."""
    model.eval()
    out = [
        torch.sigmoid(model(table.batch(torch.arange(s, min(s + batch_size, len(table))))))
        for s in range(0, len(table), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0)


def evaluate(model: nn.Module, table: TableSplit) -> dict[str, float]:
    """``{"auc", "logloss"}`` of ``model`` on ``table``, with :mod:`recsys_lab.metrics`."""
    p = predict(model, table)
    y = table.labels["click"]
    return {"auc": auc(p, y), "logloss": logloss(p, y)}
