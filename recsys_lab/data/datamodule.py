"""Lightning-free datamodules: in-memory columnar splits served as whole batches.

A datamodule exposes ``schema``, ``setup()``, ``train_dataloader()``, ``val_dataloader()``,
``test_dataloader()`` and ``oracle_metrics(split)``. The training entry hands its dataloaders to
Lightning, so ``data/`` never imports Lightning.

Batches are cut from columnar tensors by index (no per-sample collate), which is what makes
small-model CPU training fast. Shuffling is a permutation seeded by ``(seed, epoch)``, so an
interrupted run resumed from a checkpoint sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema

SPLITS = ("train", "val", "test")


@dataclass
class TableSplit:
    """One split held as columns.

    Attributes:
        dense: float32 ``[N, D]``.
        sparse: int64 ``[N, F]`` (or int32; widened per batch).
        labels: name -> float32 ``[N]``.
        user: int64 ``[N]`` or None.
        extras: name -> ``[N]`` side data (e.g. ``true_prob`` on synthetic data).
    """

    dense: Tensor
    sparse: Tensor
    labels: dict[str, Tensor]
    user: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.sparse.shape[0]

    def batch(self, index: Tensor) -> Batch:
        return Batch(
            dense=self.dense[index],
            sparse=self.sparse[index].long(),
            labels={k: v[index] for k, v in self.labels.items()},
            user=None if self.user is None else self.user[index].long(),
            extras={k: v[index] for k, v in self.extras.items()},
        )


class EpochBatchSampler(Sampler[Tensor]):
    """Yields int64 index tensors of one batch each.

    Shuffles with a generator seeded by ``seed + epoch`` (Lightning calls :meth:`set_epoch`).
    Under ``torch.distributed`` each rank takes a disjoint, equally long shard.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rows(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            rows = torch.randperm(self.num_rows, generator=g)
        else:
            rows = torch.arange(self.num_rows)
        if self.num_replicas > 1:
            per_rank = self.num_rows // self.num_replicas
            rows = rows[self.rank * per_rank : (self.rank + 1) * per_rank]
        return rows

    def __iter__(self) -> Iterator[Tensor]:
        rows = self._rows()
        n = rows.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield rows[start : start + self.batch_size]

    def __len__(self) -> int:
        n = self.num_rows // self.num_replicas if self.num_replicas > 1 else self.num_rows
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class _TableDataset(Dataset[Batch]):
    def __init__(self, table: TableSplit) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        return self.table.batch(index)


def _identity(batch: Batch) -> Batch:
    return batch


def table_loader(
    table: TableSplit,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader that yields :class:`Batch` objects cut from ``table``."""
    sampler = EpochBatchSampler(len(table), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    return DataLoader(
        _TableDataset(table),
        sampler=sampler,
        batch_size=None,
        collate_fn=_identity,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


class DataModule(ABC):
    """Base class of every datamodule (plain Python; no Lightning)."""

    name: str = "data"

    @property
    @abstractmethod
    def schema(self) -> Schema: ...

    @abstractmethod
    def setup(self) -> None:
        """Build or load the data. Idempotent."""

    @abstractmethod
    def train_dataloader(self) -> DataLoader: ...

    @abstractmethod
    def val_dataloader(self) -> DataLoader: ...

    @abstractmethod
    def test_dataloader(self) -> DataLoader: ...

    def oracle_metrics(self, split: str) -> dict[str, float]:
        """Metrics of the true probabilities on ``split`` (``{}`` when they are unknown)."""
        return {}
