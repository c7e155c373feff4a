"""``data=synthetic_seq``: the synthetic world's samples with their behaviour histories, shuffled.

The world (:mod:`.world`) is generated once per process and spec (cached), then cut into samples
(:class:`~recsys_lab.data.synthetic.sequences.WorldSamples`). Splits are by time: the first
``warmup_days`` days only feed histories, the last ``test_days`` days are the test split, the
``val_days`` before them validation, and every sample day before that is training.

:class:`WorldDataModule` holds what the sequence and the streaming datamodules share: the world,
the samples, batches, and the oracle metrics of every label, per split and per day.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from recsys_lab.data.batch import Batch
from recsys_lab.data.datamodule import (
    SPLITS,
    DataModule,
    DataSize,
    EpochBatchSampler,
    LoaderSpec,
    batch_loader,
    cap,
    check_size,
)
from recsys_lab.data.packing import Packing, Tiling, check_packing, tile_user_events
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.data.synthetic.sequences import ROWS, WorldSamples, onboarding_features, world_schema
from recsys_lab.data.synthetic.world import DAY, EventLog, World, WorldSpec
from recsys_lab.metrics import auc, logloss

ORACLE_PROB = {
    "click": "true_prob",
    "conversion": "true_prob_conversion",
    "retention": "true_prob_retention",
}
"""``Batch.extras`` key of the true probability of each label."""


@functools.lru_cache(maxsize=1)
def build_world(spec: WorldSpec, workers: int = 1) -> tuple[World, EventLog]:
    """The world of ``spec`` and its whole event log, cached per process (the arrays are
    read-only: datamodules built from the same spec share them)."""
    world = World(spec)
    log = world.generate_all(workers)
    for value in vars(log).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return world, log


def read_teacher_file(path: str) -> dict[str, np.ndarray]:
    """A logged-predictions file: ``{"log_row": int64 [n] sorted, "<name>": [n] or [n, H]}``."""
    try:
        with np.load(path) as f:
            out = {"log_row": f["log_row"]}
            out.update({k[4:]: f[k] for k in f.files if k.startswith("col_")})
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"data.teacher_path={path} is not a readable logged-predictions file ({err}); it is written "
            "by the DAS stage (recsys_lab.runners.das)"
        ) from err
    if len(out) < 2 or np.any(np.diff(out["log_row"]) <= 0):
        raise ValueError(f"data.teacher_path={path}: needs sorted unique log_row and at least one col_*")
    return out


class LoggedTeacherSamples(WorldSamples):
    """:class:`WorldSamples` whose batches carry logged teacher predictions in ``Batch.teacher``,
    looked up by each sample's event-log row (NaN where the file has none)."""

    def __init__(self, *args: Any, teacher: dict[str, np.ndarray]) -> None:
        super().__init__(*args)
        rows = teacher["log_row"]
        pos = np.searchsorted(rows, self.columns.log_row).clip(max=max(rows.size - 1, 0))
        found = rows.size > 0 and rows[pos] == self.columns.log_row
        self._teacher_pos = np.where(found, pos, -1)  # [n] row in the file, -1 = none
        self._teacher = {k: v for k, v in teacher.items() if k != "log_row"}

    def batch(self, index: np.ndarray, privileged: bool = False) -> Batch:
        batch = super().batch(index, privileged)
        pos = self._teacher_pos[index]
        has = pos >= 0
        teacher = {}
        for name, col in self._teacher.items():
            value = col[np.maximum(pos, 0)].astype(np.float32)
            value[~has] = np.nan
            teacher[name] = torch.from_numpy(value)
        batch.teacher = teacher
        return batch


class _PackedSampleDataset(Dataset[Batch]):
    """The samples at ``positions`` (the candidates of packed segments), indexed by batch index tensors."""

    def __init__(self, samples: WorldSamples, positions: np.ndarray, privileged: bool) -> None:
        self.samples, self.positions, self.privileged = samples, positions, privileged

    def __len__(self) -> int:
        return self.positions.size

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        return self.samples.batch(self.positions[index.numpy()], privileged=self.privileged)


class _SampleDataset(Dataset[Batch]):
    """Samples ``[lo, hi)`` of a :class:`WorldSamples`; indexed by whole-batch index tensors."""

    def __init__(self, samples: WorldSamples, lo: int, hi: int, privileged: bool) -> None:
        self.samples, self.lo, self.hi, self.privileged = samples, lo, hi, privileged

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        return self.samples.batch(index.numpy() + self.lo, privileged=self.privileged)


def sample_loader(
    samples: WorldSamples,
    lo: int,
    hi: int,
    sampler: Sampler[Tensor],
    privileged: bool,
    num_workers: int | LoaderSpec,
) -> DataLoader:
    """A DataLoader of :class:`Batch` es of samples ``[lo, hi)`` in the order ``sampler`` gives
    (``num_workers``: a count, or the datamodule's :class:`LoaderSpec`)."""
    workers = num_workers.num_workers if isinstance(num_workers, LoaderSpec) else num_workers
    return batch_loader(_SampleDataset(samples, lo, hi, privileged), sampler, workers)


class WorldDataModule(DataModule):
    """Base of the synthetic-world datamodules.

    Args:
        preset: ``tiny``, ``small`` or ``large`` (:data:`~recsys_lab.data.synthetic.world.WORLD_PRESETS`).
        world: knobs of :class:`~recsys_lab.data.synthetic.world.WorldSpec` that replace the
            preset's (null values keep the preset's; an unknown knob fails at start-up).
        rows: ``exposures`` (CTR/CVR samples) or ``conversions`` (retention samples).
        label: the label the task fits; its oracle is reported as ``oracle_auc``/``oracle_logloss``.
        domains: serve only these domains (1-based ids); null = all.
        max_history: the K most recent events in ``Batch.history``; 0 = no history; null = all.
        privileged: put the onboarding content in training batches (``Batch.privileged``); never
            in validation, test or per-day evaluation batches.
        warmup_days, val_days, test_days: the split by days (see the module docstring).
        batch_size, eval_batch_size, num_workers: the :class:`LoaderSpec`.
        generation_workers: processes generating the world (the data do not depend on it).
        teacher_path: a logged-predictions file (``.npz`` written by :mod:`recsys_lab.runners.das`: sorted
            ``log_row`` plus ``col_<name>`` columns) read into ``Batch.teacher[<name>]`` of every
            batch (NaN where the file has no row); null = no ``Batch.teacher``.
        packing: ``sample`` (each training sample its own segment) or ``user`` (each user's
            training events tiled into non-overlapping segments; :mod:`recsys_lab.data.packing`).
            Only ``synthetic_seq`` supports ``user``.
    """

    name = "synthetic_world"
    #: whether ``packing=user`` (per-user tiling of the training split) is implemented
    supports_user_packing = False

    def __init__(
        self,
        preset: str = "small",
        world: Mapping[str, Any] | None = None,
        rows: str = "exposures",
        label: str = "click",
        domains: Sequence[int] | None = None,
        max_history: int | None = 256,
        privileged: bool = False,
        warmup_days: int = 2,
        val_days: int = 1,
        test_days: int = 1,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        num_workers: int = 0,
        generation_workers: int = 1,
        teacher_path: str | None = None,
        size: DataSize = "full",
        packing: Packing = "sample",
    ) -> None:
        self.size = check_size(size, "synthetic world data")
        self.packing = check_packing(packing, f"{self.name} data", self.supports_user_packing)
        if size != "full":
            preset, max_history = "tiny", cap(max_history, size, 64, 32)
        overrides = {k: v for k, v in (world or {}).items() if v is not None}
        self.spec = WorldSpec.from_preset(preset, overrides)
        if rows not in ROWS:
            raise ValueError(f"synthetic world data: rows={rows!r} is unknown; use one of {list(ROWS)}")
        self.rows = rows
        self._schema = world_schema(self.spec, rows)
        if label not in self._schema.labels:
            raise ValueError(
                f"synthetic world data: label={label!r} is not a label of rows={rows!r} (labels: "
                f"{list(self._schema.labels)}); retention needs data.rows=conversions"
            )
        self.label = label
        if domains is not None:
            domains = tuple(int(d) for d in domains)
            bad = [d for d in domains if not 1 <= d <= self.spec.num_domains]
            if not domains or bad:
                raise ValueError(
                    f"synthetic world data: domains={list(domains)} must be non-empty ids in "
                    f"1..{self.spec.num_domains} (num_domains)"
                )
        self.domains = domains
        if max_history is not None and max_history < 0:
            raise ValueError(f"synthetic world data: max_history={max_history} must be >= 0 or null (all)")
        self.max_history = max_history
        self.privileged = privileged
        for arg, value, low in (
            ("warmup_days", warmup_days, 0),
            ("val_days", val_days, 1),
            ("test_days", test_days, 1),
            ("generation_workers", generation_workers, 1),
        ):
            if value < low:
                raise ValueError(f"synthetic world data: {arg}={value!r} must be >= {low}")
        days = self.spec.num_days
        if warmup_days + val_days + test_days >= days:
            raise ValueError(
                f"synthetic world data: warmup_days + val_days + test_days = "
                f"{warmup_days + val_days + test_days} leaves no training day in a world of "
                f"num_days={days}; raise data.world.num_days or lower them"
            )
        self.sample_days = range(warmup_days, days)
        self.split_days = {
            "train": range(warmup_days, days - val_days - test_days),
            "val": range(days - val_days - test_days, days - test_days),
            "test": range(days - test_days, days),
        }
        self.loader = LoaderSpec(batch_size, eval_batch_size, num_workers).sized(size, eval_tiny=2048)
        self.batch_size = self.loader.batch_size
        self.eval_batch_size = self.loader.eval_batch_size
        self.num_workers = num_workers
        self.generation_workers = generation_workers
        self.teacher_path = teacher_path
        self._world: World | None = None
        self._samples: WorldSamples | None = None

    # -- DataModule ----------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        return self._schema

    @property
    def onboarding_features(self) -> tuple[Feature, ...]:
        """Columns of ``Batch.privileged["onboarding"].values`` (content, theme, session)."""
        return onboarding_features(self.spec)

    def setup(self) -> None:
        """Generate the world (cached per spec) and cut it into samples (once)."""
        if self._samples is not None:
            return
        world, log = build_world(self.spec, self.generation_workers)
        args = (world, log, self.rows, self.sample_days, self.domains, self.max_history)
        if self.teacher_path:
            self._samples = LoggedTeacherSamples(*args, teacher=read_teacher_file(self.teacher_path))
        else:
            self._samples = WorldSamples(*args)
        self._world = world

    @property
    def world(self) -> World:
        self.setup()
        assert self._world is not None
        return self._world

    @property
    def samples(self) -> WorldSamples:
        self.setup()
        assert self._samples is not None
        return self._samples

    def split_range(self, split: str) -> tuple[int, int]:
        """Sample positions ``[lo, hi)`` of ``split`` (train, val or test)."""
        if split not in SPLITS:
            raise ValueError(f"synthetic world data: split={split!r} is unknown; use one of {list(SPLITS)}")
        return self.samples.days_range(self.split_days[split])

    def _eval_loader(self, lo: int, hi: int) -> DataLoader:
        sampler = EpochBatchSampler(hi - lo, self.loader.eval_batch_size, shuffle=False)
        return sample_loader(self.samples, lo, hi, sampler, privileged=False, num_workers=self.loader)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(*self.split_range("val"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(*self.split_range("test"))

    # -- oracle --------------------------------------------------------------------------------
    def _oracle(self, lo: int, hi: int) -> dict[str, float]:
        c = self.samples.columns
        out: dict[str, float] = {}
        for label in self._schema.labels:
            y = torch.from_numpy(c.labels[label][lo:hi])
            p = torch.from_numpy(c.extras[ORACLE_PROB[label]][lo:hi])
            out[f"oracle_auc_{label}"] = auc(p, y)
            out[f"oracle_logloss_{label}"] = logloss(p, y)
            if label == "retention":
                q = torch.from_numpy(c.extras["observable_prob_retention"][lo:hi])
                out["observable_auc_retention"] = auc(q, y)
                out["observable_logloss_retention"] = logloss(q, y)
        out["oracle_auc"] = out[f"oracle_auc_{self.label}"]
        out["oracle_logloss"] = out[f"oracle_logloss_{self.label}"]
        return out

    def oracle_metrics(self, split: str) -> dict[str, float]:
        """AUC and LogLoss of the true probabilities on ``split``: ``oracle_auc``/``oracle_logloss``
        for :attr:`label`, ``oracle_{auc,logloss}_<label>`` and ``<label>/oracle_{auc,logloss}``
        for every label, and for retention ``observable_{auc,logloss}_retention`` (the best
        possible without onboarding content)."""
        return self.with_label_keys(self._oracle(*self.split_range(split)))

    def with_label_keys(self, oracle: dict[str, float]) -> dict[str, float]:
        """``oracle`` plus ``<label>/oracle_{auc,logloss}`` for every label: the per-label key
        layout of multi-task runs (``<split>/<label>/<metric>``)."""
        out = dict(oracle)
        for label in self._schema.labels:
            out[f"{label}/oracle_auc"] = oracle[f"oracle_auc_{label}"]
            out[f"{label}/oracle_logloss"] = oracle[f"oracle_logloss_{label}"]
        return out

    def oracle_by_day(self) -> list[dict[str, Any]]:
        """One row per sample day: ``day``, ``split``, ``rows``, each label's rate and the oracle
        metrics of :meth:`oracle_metrics` (for a table beside a streaming run's metrics)."""
        out = []
        c = self.samples.columns
        for split, days in self.split_days.items():
            for day in days:
                lo, hi = self.samples.day_range(day)
                row: dict[str, Any] = {"day": day, "split": split, "rows": hi - lo}
                row.update(
                    {f"{k}_rate": float(c.labels[k][lo:hi].mean()) if hi > lo else math.nan for k in c.labels}
                )
                row.update(self._oracle(lo, hi) if hi > lo else {})
                out.append(row)
        return out


class SyntheticSeqDataModule(WorldDataModule):
    """``data=synthetic_seq``: shuffled samples with their histories, split by days.

    See :class:`WorldDataModule` for the arguments and
    :class:`~recsys_lab.data.synthetic.sequences.WorldSamples` for the batch fields.
    """

    name = "synthetic_seq"
    supports_user_packing = True

    def train_dataloader(self) -> DataLoader:
        lo, hi = self.split_range("train")
        if self.packing == "user":
            positions = self.packed_train_positions()
            sampler = EpochBatchSampler(
                positions.size, self.loader.batch_size, shuffle=True, seed=self.spec.seed
            )
            dataset = _PackedSampleDataset(self.samples, positions, self.privileged)
            return batch_loader(dataset, sampler, self.loader.num_workers)
        sampler = EpochBatchSampler(hi - lo, self.loader.batch_size, shuffle=True, seed=self.spec.seed)
        return sample_loader(
            self.samples, lo, hi, sampler, privileged=self.privileged, num_workers=self.loader
        )

    def train_tiling(self) -> Tiling:
        """``data.packing=user``: the tiling of every user's training-day events (log rows of the
        world's event log; :func:`~recsys_lab.data.packing.tile_user_events`). A segment's
        candidate is a training sample and its window ``[max(first, r - K), r)`` is exactly that
        sample's history, so a packed batch is an ordinary :class:`Batch` of those samples."""
        if self.domains is not None or self.rows != "exposures":
            raise ValueError(
                f"synthetic_seq data: data.packing=user needs every event of the training days to be a sample "
                f"(data.rows=exposures, data.domains=null), got rows={self.rows!r}, domains={self.domains}; "
                "use data.packing=sample"
            )
        log = self.samples.log
        days = self.split_days["train"]
        span = (self.spec.num_days + 1) * DAY
        key = log.user.astype(np.int64) * span + log.ts  # [n] sorted: the log is sorted by user, then time
        users = np.arange(self.spec.total_users + 1, dtype=np.int64)
        hist_first = np.searchsorted(key, users * span)
        train_lo = np.searchsorted(key, users * span + days.start * DAY)
        train_hi = np.searchsorted(key, users * span + days.stop * DAY)
        return tile_user_events(hist_first, train_lo, train_hi, self.max_history)

    def packed_train_positions(self) -> np.ndarray:
        """int64 ``[S]`` sample positions of the segments' candidates (``data.packing=user``)."""
        cand = self.train_tiling().candidate
        log_row = self.samples.columns.log_row
        order = np.argsort(log_row, kind="stable")
        found = np.searchsorted(log_row[order], cand)
        positions = order[found]
        lo, hi = self.split_range("train")
        if (
            not np.array_equal(log_row[positions], cand)
            or positions.min(initial=lo) < lo
            or positions.max(initial=lo) >= hi
        ):
            raise RuntimeError("synthetic_seq data: a packed segment's candidate is not a training sample")
        return positions
