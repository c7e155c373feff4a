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
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema

SPLITS = ("train", "val", "test")
T = TypeVar("T")

DataSize = Literal["full", "tiny", "fast_dev_run"]
SIZES: tuple[str, ...] = ("full", "tiny", "fast_dev_run")
"""``data.size``: ``full`` (the config as written), ``tiny`` (CI-sized: one epoch in seconds) or
``fast_dev_run`` (one small batch per split). ``debug=tiny`` / ``debug=fast_dev_run`` set it."""


def check_size(size: str, where: str) -> str:
    """``size`` if it is one of :data:`SIZES`, else a ValueError naming ``where``."""
    if size not in SIZES:
        raise ValueError(f"{where}: size={size!r} is unknown; use one of {list(SIZES)} (data.size)")
    return size


def cap(value: int | None, size: str, tiny: int, fast_dev_run: int) -> int | None:
    """``value`` capped at the ``tiny`` / ``fast_dev_run`` limit of ``size`` (None, unbounded,
    becomes the limit); ``full`` keeps it. Smaller values set by the user stay."""
    limit = {"tiny": tiny, "fast_dev_run": fast_dev_run}.get(size)
    if limit is None:
        return value
    return limit if value is None else min(value, limit)


def train_batch_size(batch_size: int, size: str) -> int:
    """The training batch size a loader configured with ``batch_size`` uses under ``size``."""
    return int(cap(batch_size, size, 256, 128))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoaderSpec:
    """How a datamodule serves its batches; every datamodule holds one (``datamodule.loader``),
    fed by the config keys ``data.batch_size``, ``data.eval_batch_size`` and ``data.num_workers``.

    Training batches are shuffled (each datamodule's sampler says how: by rows, windows or days,
    always seeded by ``(seed, epoch)``); validation and test batches come in order. Batches are
    cut whole by the dataset (no per-sample collate); workers persist across epochs.

    Attributes:
        batch_size: training batch size (per rank under DDP).
        eval_batch_size: validation / test batch size.
        num_workers: DataLoader worker processes (0 = in the main process, usually fastest here).
    """

    batch_size: int
    eval_batch_size: int
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key, value, low in (
            ("batch_size", self.batch_size, 1),
            ("eval_batch_size", self.eval_batch_size, 1),
            ("num_workers", self.num_workers, 0),
        ):
            if value < low:
                raise ValueError(f"data loader: {key}={value!r} must be >= {low} (data.{key})")

    def sized(self, size: str, eval_tiny: int = 1024) -> LoaderSpec:
        """This spec under ``data.size``: batches of at most 256 / ``eval_tiny`` rows (``tiny``)
        or 128 / 256 (``fast_dev_run``)."""
        return LoaderSpec(
            batch_size=train_batch_size(self.batch_size, size),
            eval_batch_size=int(cap(self.eval_batch_size, size, eval_tiny, 256)),  # type: ignore[arg-type]
            num_workers=self.num_workers,
        )

    def batches(self, train: bool) -> int:
        """The batch size of training (``train``) or evaluation batches."""
        return self.batch_size if train else self.eval_batch_size

    def build(self, dataset: Dataset[Any], sampler: Sampler[Any]) -> ResumableLoader:
        """The loader of ``dataset`` in ``sampler``'s batches (see :func:`batch_loader`)."""
        return batch_loader(dataset, sampler, self.num_workers)

    def table(self, table: TableSplit, train: bool, seed: int = 0) -> DataLoader:
        """Batches of ``table``: shuffled by ``(seed, epoch)`` when ``train``, else in order."""
        return table_loader(
            table, self.batches(train), shuffle=train, seed=seed, num_workers=self.num_workers
        )


def world_and_rank(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: the given ones, else the ``torch.distributed`` process group's at
    call time (1 and 0 without one)."""
    active = dist.is_available() and dist.is_initialized()
    replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if active else 1)
    rank = rank if rank is not None else (dist.get_rank() if active else 0)
    if not 0 <= rank < replicas:
        raise ValueError(f"rank must be in [0, {replicas}), got {rank}")
    return replicas, rank


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
    Under ``torch.distributed`` (world size and rank read when iterating, so a process group set
    up after the loader was built counts) each rank takes a disjoint shard:

    - shuffled (training): equally long shards, every rank takes the same number of steps, and
      step k of R ranks sees exactly batch k of one process with ``R x batch_size`` (rank r takes
      the r-th slice of it); the last ``len % R`` rows of an epoch are left out;
    - not shuffled (evaluation): contiguous shards covering every row, so metrics gathered over
      ranks equal the single-process ones.
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

    def _world(self) -> tuple[int, int]:
        return world_and_rank(self.num_replicas, self.rank)

    def _rows(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            rows = torch.randperm(self.num_rows, generator=g)
        else:
            rows = torch.arange(self.num_rows)
        replicas, rank = self._world()
        if replicas > 1 and self.shuffle:
            # Global batch k = rows[k·G : (k+1)·G], G = R·batch_size; rank r takes its r-th slice.
            g_size = replicas * self.batch_size
            full = self.num_rows // g_size * g_size
            tail = (self.num_rows - full) // replicas  # the last partial global batch, split evenly
            head = rows[:full].view(-1, replicas, self.batch_size)[:, rank].reshape(-1)  # [full / R]
            rows = torch.cat([head, rows[full + rank * tail : full + (rank + 1) * tail]])
        elif replicas > 1:
            lo, hi = self._eval_bounds(replicas, rank)
            rows = rows[lo:hi]
        return rows

    def _eval_bounds(self, replicas: int, rank: int) -> tuple[int, int]:
        return self.num_rows * rank // replicas, self.num_rows * (rank + 1) // replicas

    def __iter__(self) -> Iterator[Tensor]:
        rows = self._rows()
        n = rows.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield rows[start : start + self.batch_size]

    def __len__(self) -> int:
        replicas, rank = self._world()
        if replicas == 1:
            n = self.num_rows
        elif self.shuffle:
            n = self.num_rows // replicas
        else:
            lo, hi = self._eval_bounds(replicas, rank)
            n = hi - lo
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class _TableDataset(Dataset[Batch]):
    def __init__(self, table: TableSplit) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        return self.table.batch(index)


def _identity(batch: T) -> T:
    return batch


class ResumableLoader(DataLoader):
    """A DataLoader that knows how far into its epoch it is, so a run resumed from a mid-epoch
    checkpoint continues from the exact next batch.

    Lightning stores :meth:`state_dict` (the epoch and the batches served in it) in checkpoints and
    hands it back through :meth:`load_state_dict` on resume; the next iteration over the same epoch
    then skips the batches already trained on (they are cut and dropped, which costs a fraction of
    training them). Iteration is lazy, so the skip is decided after Lightning has set the epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._served = 0
        self._resume: dict[str, int] | None = None

    def _sampler_epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        self._epoch, self._served = self._sampler_epoch(), 0
        skip = 0
        if self._resume is not None:
            if self._resume["epoch"] == self._epoch:
                skip = self._resume["batches"]
            self._resume = None
        for i, batch in enumerate(super().__iter__()):
            self._served = i + 1
            if i >= skip:
                yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}


def batch_loader(dataset: Dataset[Any], sampler: Sampler[Any], num_workers: int = 0) -> ResumableLoader:
    """The loader every datamodule uses: ``sampler`` yields one batch's index at a time and
    ``dataset[index]`` cuts the whole batch (no per-sample collate); resumable mid-epoch."""
    return ResumableLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        collate_fn=_identity,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


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
    return batch_loader(_TableDataset(table), sampler, num_workers)


class DataModule(ABC):
    """Base class of every datamodule (plain Python; no Lightning).

    Every datamodule holds a :class:`LoaderSpec` (``loader``: batch sizes, workers) and a
    ``size`` (:data:`SIZES`) that caps its rows and batches for debug runs.
    """

    name: str = "data"
    loader: LoaderSpec
    size: str = "full"

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
