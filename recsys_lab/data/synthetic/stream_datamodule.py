"""``data=synthetic_stream``: the synthetic world's days in order, for one-pass (streaming) training
with per-day, prequential evaluation.

Training batches come day by day in calendar order (shuffled within a day only, never across
days), so one epoch is one pass over the stream. Through ``recsys_lab.train`` the last
``test_days`` days are the test split and the ``val_days`` before them validation (set
``trainer.max_epochs=1`` for a true single pass). Streaming pipelines (ExFM) use the per-day
interface instead: :attr:`days`, :meth:`day_dataloader` and :meth:`prequential_days` — train on
day ``d``, evaluate on day ``d + 1`` — and :meth:`day_oracle_metrics` / :meth:`oracle_by_day` for
the best possible on each day.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from recsys_lab.data.datamodule import EpochBatchSampler, world_and_rank
from recsys_lab.data.synthetic.seq_datamodule import WorldDataModule, sample_loader


class DayOrderedBatchSampler(Sampler[Tensor]):
    """Batches of the days of a stream, day after day; shuffled within a day by
    ``(seed, epoch, day)``. A batch never spans two days. Under ``torch.distributed`` each rank
    takes a disjoint, equally long share of every day.

    Args:
        day_bounds: ``[(lo, hi), ...]`` row ranges of the days, in stream order.
    """

    def __init__(
        self,
        day_bounds: list[tuple[int, int]],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        num_replicas, rank = world_and_rank(num_replicas, rank)
        self.day_bounds = day_bounds
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _day_rows(self, k: int, lo: int, hi: int) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_007 + k)
            rows = lo + torch.randperm(hi - lo, generator=g)
        else:
            rows = torch.arange(lo, hi)
        if self.num_replicas > 1:
            per_rank = (hi - lo) // self.num_replicas
            rows = rows[self.rank * per_rank : (self.rank + 1) * per_rank]
        return rows

    def __iter__(self) -> Iterator[Tensor]:
        for k, (lo, hi) in enumerate(self.day_bounds):
            rows = self._day_rows(k, lo, hi)
            for start in range(0, rows.numel(), self.batch_size):
                yield rows[start : start + self.batch_size]

    def __len__(self) -> int:
        total = 0
        for lo, hi in self.day_bounds:
            n = (hi - lo) // self.num_replicas if self.num_replicas > 1 else hi - lo
            total += math.ceil(n / self.batch_size)
        return total


class SyntheticStreamDataModule(WorldDataModule):
    """``data=synthetic_stream``: the world's sample days in order (see the module docstring).

    Arguments are those of :class:`~recsys_lab.data.synthetic.seq_datamodule.WorldDataModule`.
    """

    name = "synthetic_stream"

    @property
    def days(self) -> list[int]:
        """Every sample day, in order (the warm-up days before them only feed histories)."""
        return list(self.sample_days)

    def prequential_days(self) -> list[tuple[int, int]]:
        """``(train_day, eval_day)`` pairs of a prequential run: train on d, evaluate on d + 1."""
        return [(d, d + 1) for d in self.days[:-1]]

    def day_dataloader(self, day: int, train: bool = False) -> DataLoader:
        """The samples of ``day``: shuffled, training-sized and with privileged data (if
        configured) when ``train``; otherwise in time order, evaluation-sized, without it."""
        lo, hi = self.samples.day_range(day)
        if train:
            sampler = DayOrderedBatchSampler(
                [(0, hi - lo)], self.loader.batch_size, shuffle=True, seed=self.spec.seed + day
            )
        else:
            sampler = EpochBatchSampler(hi - lo, self.loader.eval_batch_size, shuffle=False)
        return sample_loader(
            self.samples, lo, hi, sampler, privileged=train and self.privileged, num_workers=self.loader
        )

    def day_oracle_metrics(self, day: int) -> dict[str, float]:
        """:meth:`oracle_metrics` of one day."""
        return self.with_label_keys(self._oracle(*self.samples.day_range(day)))

    def train_dataloader(self) -> DataLoader:
        """One ordered pass over the training days."""
        lo, hi = self.split_range("train")
        bounds = [self.samples.day_range(d) for d in self.split_days["train"]]
        bounds = [(a - lo, b - lo) for a, b in bounds]
        sampler = DayOrderedBatchSampler(bounds, self.loader.batch_size, shuffle=True, seed=self.spec.seed)
        return sample_loader(
            self.samples, lo, hi, sampler, privileged=self.privileged, num_workers=self.loader
        )
