"""The datamodule base of real datasets: raw files -> preprocessed cache -> memory-mapped batches.

:class:`CachedDataModule` finds the input files, builds the cache once per (inputs, preprocessing
config) — see :mod:`recsys_lab.data.preprocess.cache` — and serves its splits from memory-mapped
arrays, so the dataset is never loaded into RAM. Subclasses (Criteo, Avazu, MovieLens) only say
where their files are, what the preprocessing config is, and how to build the cache.

Loading: a :class:`WindowShuffleSampler` yields whole-batch index tensors — rows shuffled within
windows of ``shuffle_buffer`` consecutive rows, windows in random order, seeded by
``(seed, epoch)``, and each distributed rank a disjoint equal shard — and :class:`CachedSplit`
cuts each :class:`~recsys_lab.data.batch.Batch` from the arrays with one fancy index per column
(no per-sample collate). Several DataLoader workers each open the arrays themselves.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.datamodule import (
    SPLITS,
    DataModule,
    DataSize,
    EpochBatchSampler,
    LoaderSpec,
    cap,
    check_size,
)
from recsys_lab.data.packing import Packing, Tiling, check_packing
from recsys_lab.data.preprocess import numeric as num
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.cache import (
    FORMAT_VERSION,
    MANIFEST,
    atomic_folder,
    build_lock,
    cache_key,
    check_cache,
    check_split_arrays,
    file_index,
    fingerprint,
    is_complete,
    load_array,
    write_json,
)
from recsys_lab.data.preprocess.errors import DataError, DatasetNotFoundError
from recsys_lab.data.preprocess.readers import count_lines
from recsys_lab.data.preprocess.split import check_fractions, position_cuts
from recsys_lab.data.preprocess.tabular import (
    Source,
    SplitRule,
    TabularOptions,
    TabularPreprocessor,
    TabularSpec,
    feature_kinds,
)
from recsys_lab.data.schema import Schema

log = logging.getLogger(__name__)

EVENTS = "events"
"""Cache folder of behaviour-history events (datasets with ``Batch.history``)."""


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------


class WindowShuffleSampler(EpochBatchSampler):
    """Yields int64 index tensors of one batch each, shuffled within a bounded window.

    With ``shuffle``, rows are cut into windows of ``buffer_size`` consecutive rows; the windows
    come in a random order and each window's rows in a random order (a window at a time is what
    the loader touches, so a buffer the size of the data is a full shuffle). The order depends
    only on ``(seed, epoch)`` (Lightning calls :meth:`set_epoch`), so a resumed run sees the same
    batches. Under ``torch.distributed`` (looked up when iterating, unless given) each rank takes
    a disjoint, equally long part of that order (epochs and ranks as :class:`EpochBatchSampler`).
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        shuffle: bool,
        buffer_size: int,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {buffer_size}")
        super().__init__(num_rows, batch_size, shuffle, seed, drop_last, num_replicas, rank)
        self.buffer_size = buffer_size

    def _windows(self) -> Iterator[np.ndarray]:
        """The epoch's row order, one window at a time."""
        n, w = self.num_rows, self.buffer_size
        if not self.shuffle:
            for start in range(0, n, w):
                yield np.arange(start, min(n, start + w), dtype=np.int64)
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        for k in rng.permutation(math.ceil(n / w)):
            start = int(k) * w
            yield start + rng.permutation(min(n, start + w) - start).astype(np.int64)

    def _shard(self) -> tuple[int, int]:
        replicas, rank = self._world()
        per_rank = self.num_rows // replicas
        return rank * per_rank, (rank + 1) * per_rank

    def __iter__(self) -> Iterator[Tensor]:
        lo, hi = self._shard()
        pending: list[np.ndarray] = []
        pending_rows = 0
        position = 0
        for window in self._windows():
            start, end = position, position + len(window)
            position = end
            if end <= lo or start >= hi:
                continue
            part = window[max(lo - start, 0) : min(hi, end) - start]
            pending.append(part)
            pending_rows += len(part)
            while pending_rows >= self.batch_size:
                rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield torch.from_numpy(rows[: self.batch_size].copy())
                rest = rows[self.batch_size :]
                pending, pending_rows = ([rest] if len(rest) else []), len(rest)
        if pending_rows and not self.drop_last:
            yield torch.from_numpy(np.concatenate(pending))

    def __len__(self) -> int:
        lo, hi = self._shard()
        n = hi - lo
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


# ------------------------------------------------------------------------------------------------
# One split of a cache
# ------------------------------------------------------------------------------------------------


class CachedSplit(Dataset[Batch]):
    """One split of a cache, memory-mapped; ``split[index]`` (int64 index tensor ``[B]``) is a Batch.

    Arrays are opened lazily in each process (DataLoader workers re-open them after unpickling).

    Args:
        folder: the cache folder.
        split: ``train``, ``val`` or ``test``.
        num_rows: rows of the split (from the manifest).
        schema: the cache's schema.
        max_history: keep each sample's most recent events only (None = all); datasets with
            history only.
    """

    def __init__(
        self, folder: Path, split: str, num_rows: int, schema: Schema, max_history: int | None = None
    ) -> None:
        self.folder = folder
        self.split = split
        self.num_rows = num_rows
        self.schema = schema
        self.max_history = max_history
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return self.num_rows

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The split's memory-mapped arrays (plus ``events/*`` for datasets with history)."""
        if self._arrays is None:
            arrays = {p.stem: load_array(p) for p in sorted((self.folder / self.split).glob("*.npy"))}
            check_split_arrays(self.folder, self.split, self.num_rows, self.schema, arrays)
            if "hist_end" in arrays:
                for p in sorted((self.folder / EVENTS).glob("*.npy")):
                    arrays[f"events/{p.stem}"] = load_array(p)
            self._arrays = arrays
        return self._arrays

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        rows = np.sort(index.numpy()) if isinstance(index, Tensor) else np.sort(np.asarray(index))
        return self.batch(rows)

    def batch(self, rows: np.ndarray, windows: tuple[np.ndarray, np.ndarray] | None = None) -> Batch:
        """The Batch of rows ``rows`` (int64 ``[B]``); ``windows`` = ``(start, end)`` int64 ``[B]``
        replace each sample's history by the events ``[start, end)`` (packed segments,
        :mod:`recsys_lab.data.packing`)."""
        a = self.arrays
        user = a.get("user")
        return Batch(
            dense=torch.from_numpy(a["dense"][rows]),
            sparse=torch.from_numpy(a["sparse"][rows].astype(np.int64)),
            labels={name: torch.from_numpy(a[name][rows]) for name in self.schema.labels},
            user=None if user is None else torch.from_numpy(user[rows].astype(np.int64)),
            history=self._history(rows, windows) if "hist_end" in a else None,
            multi=torch.from_numpy(a["multi"][rows].astype(np.int64)) if "multi" in a else None,
        )

    def _history(self, rows: np.ndarray, windows: tuple[np.ndarray, np.ndarray] | None = None) -> Jagged:
        """Each sample's events ``hist_start:hist_end`` (most recent ``max_history``), or the
        given ``windows``, packed."""
        a = self.arrays
        if windows is not None:
            start, end = windows
        else:
            end = a["hist_end"][rows].astype(np.int64)
            start = a["hist_start"][rows].astype(np.int64)
            if self.max_history is not None:
                start = np.maximum(start, end - self.max_history)
        lengths = end - start  # [B]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        seg = np.repeat(np.arange(len(rows)), lengths)  # [N] sample of each event row
        events = np.arange(offsets[-1], dtype=np.int64) - offsets[:-1][seg] + start[seg]  # [N]
        return Jagged(
            values=torch.from_numpy(a["events/values"][events].astype(np.int64)),
            actions=torch.from_numpy(a["events/actions"][events].astype(np.int64)),
            timestamps=torch.from_numpy(a["events/timestamps"][events].astype(np.int64)),
            offsets=torch.from_numpy(offsets),
        )


class PackedSplit(Dataset[Batch]):
    """The packed segments of a split (``data.packing=user``): segment k is the sample at row
    ``rows[k]`` with the history window ``[tiling.start[k], tiling.end[k])`` of the event arrays.
    ``dataset[index]`` (int64 index tensor ``[B]`` of segments) is a Batch of B segments.
    """

    def __init__(self, split: CachedSplit, rows: np.ndarray, tiling: Tiling) -> None:
        self.split, self.rows, self.tiling = split, rows, tiling

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        k = np.sort(index.numpy())
        return self.split.batch(self.rows[k], (self.tiling.start[k], self.tiling.end[k]))


# ------------------------------------------------------------------------------------------------
# The datamodule base
# ------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class CachedDataModule(DataModule):
    """Base of the datamodules that read raw files through a preprocessed cache.

    A dataset (Criteo, Avazu, MovieLens, your own tabular files) is a dataclass subclass that
    declares only its own settings as fields (the ones below are inherited, never re-listed) and
    says where its files are, what enters the cache key and how to build the cache (the hooks
    below). Its Hydra config is flat: ``data.<field>=...`` for every field.

    Args:
        path: the dataset's file or folder (see each dataset's docs for the layouts).
        cache_dir: root of the caches; this dataset's live in ``<cache_dir>/<name>/<key>/``.
        split: ``random`` (seeded 8:1:1 or ``split_fractions``), ``time`` (dataset-specific) or
            ``files`` (pre-split train/valid/test files, e.g. the BARS downloads).
        split_fractions: train, validation and test shares (``random`` and time-ordered splits).
        split_seed: seed of the random split.
        min_count: values seen fewer times in the training split map to the OOV id.
        min_count_overrides: per-field min counts, e.g. ``{C3: 20}``.
        max_rows_per_file: read at most this many data lines of each file (quick runs; None = all).
        max_bad_fraction: stop with an error above this share of malformed rows.
        batch_size, eval_batch_size, num_workers: the :class:`~recsys_lab.data.datamodule.LoaderSpec`.
        shuffle_buffer: training rows are shuffled within windows of this many rows.
        seed: seeds the training shuffle (with the epoch).
        packing: ``sample`` or ``user`` (:mod:`recsys_lab.data.packing`; datasets that support it).
        size: ``tiny`` reads at most 20k lines per file, batches of at most 256/1024 rows and
            shuffle windows of 10k; ``fast_dev_run`` 2k lines, 128/256 and 2k (``full``: as given).
    """

    name = "cached"
    #: where the dataset is published (quoted when its files are missing).
    source_url = ""

    path: Path | str
    cache_dir: Path | str
    split: str = "random"
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1)
    split_seed: int = 2018
    min_count: int = 1
    min_count_overrides: Mapping[str, int] | None = None
    max_rows_per_file: int | None = None
    max_bad_fraction: float = 0.001
    batch_size: int = 4096
    eval_batch_size: int = 16384
    shuffle_buffer: int = 1_000_000
    num_workers: int = 0
    seed: int = 0
    size: DataSize = "full"
    packing: Packing = "sample"

    #: whether ``packing=user`` (per-user tiling of the training split) is implemented
    supports_user_packing = False

    def __post_init__(self) -> None:
        check_size(self.size, f"{self.name} data")
        check_packing(self.packing, f"{self.name} data", self.supports_user_packing)
        self.loader = LoaderSpec(self.batch_size, self.eval_batch_size, self.num_workers).sized(self.size)
        self.batch_size, self.eval_batch_size = self.loader.batch_size, self.loader.eval_batch_size
        self.max_rows_per_file = cap(self.max_rows_per_file, self.size, 20_000, 2_000)
        self.shuffle_buffer = int(cap(self.shuffle_buffer, self.size, 10_000, 2_000))  # type: ignore[arg-type]
        for arg, value, low in (("shuffle_buffer", self.shuffle_buffer, 1), ("min_count", self.min_count, 1)):
            if value < low:
                raise ValueError(f"{self.name} data: {arg}={value!r} must be >= {low}")
        if self.max_rows_per_file is not None and self.max_rows_per_file < 1:
            raise ValueError(
                f"{self.name} data: max_rows_per_file={self.max_rows_per_file!r} must be >= 1 or null"
            )
        if not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(
                f"{self.name} data: max_bad_fraction={self.max_bad_fraction!r} must be in [0, 1]"
            )
        if self.split not in self.split_kinds():
            raise ValueError(
                f"{self.name} data: split={self.split!r} is unknown; use one of {list(self.split_kinds())}"
            )
        self.path = Path(str(self.path)).expanduser()
        self.cache_dir = Path(str(self.cache_dir)).expanduser()
        self.split_fractions = check_fractions(self.split_fractions)
        self.split_seed = int(self.split_seed)
        self.min_count = int(self.min_count)
        self.min_count_overrides = {str(k): int(v) for k, v in (self.min_count_overrides or {}).items()}
        self.max_bad_fraction = float(self.max_bad_fraction)
        self.seed = int(self.seed)
        self.cache_path: Path | None = None
        self.manifest: dict[str, Any] = {}
        self._schema: Schema | None = None
        self._splits: dict[str, CachedSplit] = {}

    # -- what subclasses provide ---------------------------------------------------------------
    @classmethod
    def split_kinds(cls) -> tuple[str, ...]:
        return ("random", "time", "files")

    @abstractmethod
    def input_files(self) -> list[Path]:
        """The raw files to read, in order; raise :class:`DatasetNotFoundError` if absent."""

    @abstractmethod
    def preprocess_config(self) -> dict[str, Any]:
        """Every setting that changes the cache's content (it enters the cache key)."""

    @abstractmethod
    def expected_features(self) -> list[tuple[str, str]]:
        """``(name, kind)`` of the features the config asks for, in schema order."""

    @abstractmethod
    def build(self, files: list[Path], out: Path, report: BadRowReport) -> dict[str, Any]:
        """Write the cache's arrays, schema, vocabularies into ``out``; return the manifest's
        ``rows`` (per split) and any other summary."""

    def history_limit(self) -> int | None:
        """History events kept per sample (datasets with history; None = all)."""
        return None

    def common_config(self) -> dict[str, Any]:
        """The base class's settings that change the cache (for :meth:`preprocess_config`)."""
        return {
            "split": self.split,
            "split_fractions": list(self.split_fractions),
            "split_seed": self.split_seed,
            "min_count": self.min_count,
            "min_count_overrides": dict(sorted(self.min_count_overrides.items())),
            "max_rows_per_file": self.max_rows_per_file,
        }

    def not_found(self, expected: str) -> DatasetNotFoundError:
        """The error for missing files: what was expected where, and where to get it."""
        return DatasetNotFoundError(
            f"{self.name} data not found at data.path={self.path}: expected {expected}. "
            f"The dataset is published at {self.source_url} (see docs/data.md); download it and set "
            f"data.path=<its folder or file>."
        )

    # -- DataModule ----------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        if self._schema is None:
            raise RuntimeError(f"{self.name} data: call setup() before reading the schema")
        return self._schema

    def setup(self) -> None:
        """Build the cache if needed (once per inputs and config), then open it. Idempotent."""
        if self._splits:
            return
        files = self.input_files()
        config = self.preprocess_config()
        folder = self.cache_folder(files)
        key = folder.name
        if is_complete(folder):
            log.info("%s: using the cache at %s", self.name, folder)
        else:
            try:
                folder.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DataError(
                    f"Cannot create the cache folder {folder.parent}: {e.strerror or e}. "
                    "Set data.cache_dir to a writable folder."
                ) from e
            with build_lock(folder):
                if not is_complete(folder):
                    self._build_cache(files, config, key, folder)
        self.open_cache(folder)

    def cache_folder(self, files: list[Path] | None = None) -> Path:
        """The cache folder of this config and the input files as they are now (built or not)."""
        files = self.input_files() if files is None else files
        return self.cache_dir / self.name / cache_key(self.name, fingerprint(files), self.preprocess_config())

    def open_cache(self, folder: Path) -> None:
        """Open the complete cache at ``folder`` (checked against this config) and serve its splits."""
        manifest, schema = check_cache(folder, self.name, self.preprocess_config(), self.expected_features())
        self.cache_path, self.manifest, self._schema = folder, manifest, schema
        self._splits = {
            s: CachedSplit(folder, s, int(manifest["rows"][s]), schema, self.history_limit()) for s in SPLITS
        }

    def find_cache(self) -> Path | None:
        """A complete cache under ``cache_dir`` built by this preprocessing config from files at
        the paths this config names, whatever their current size and time (None if there is none).

        For reading a trained run's vocabularies when its raw files have moved or changed.
        """
        config = json.loads(json.dumps(self.preprocess_config(), sort_keys=True, default=str))
        try:
            paths = [str(f.resolve()) for f in self.input_files()]
        except DataError:
            paths = None  # the raw files are gone: match on the config (and the path named) alone
        named = str(self.path.resolve())
        found = []
        for manifest_path in sorted((self.cache_dir / self.name).glob(f"*/{MANIFEST}")):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                continue
            cached = json.loads(json.dumps(manifest.get("config"), sort_keys=True, default=str))
            inputs = [i.get("path") for i in manifest.get("inputs", [])]
            same_files = inputs == paths if paths is not None else all(i.startswith(named) for i in inputs)
            if cached == config and same_files and manifest.get("format_version") == FORMAT_VERSION:
                found.append((manifest.get("created", ""), manifest_path.parent))
        return max(found)[1] if found else None

    def _build_cache(self, files: list[Path], config: dict[str, Any], key: str, folder: Path) -> None:
        log.info("%s: preprocessing %d file(s) into %s", self.name, len(files), folder)
        started = time.perf_counter()
        with atomic_folder(folder) as tmp:
            report = BadRowReport(self.name)
            summary = self.build(files, tmp, report)
            manifest = {
                "format_version": FORMAT_VERSION,
                "dataset": self.name,
                "key": key,
                "config": config,
                "inputs": fingerprint(files),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "polars": pl.__version__,
                "build_seconds": time.perf_counter() - started,
                "bad_rows": {k: v for k, v in report.to_dict().items() if k != "examples"},
                **summary,
                "files": file_index(tmp),
            }
            write_json(tmp / MANIFEST, manifest)

    def split_data(self, split: str) -> CachedSplit:
        """The opened split ``split`` (runs :meth:`setup` if needed)."""
        if split not in SPLITS:
            raise ValueError(f"{self.name} data: split={split!r} is unknown; use one of {list(SPLITS)}")
        self.setup()
        return self._splits[split]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = self.split_data(split)
        if len(data) == 0:
            raise ValueError(
                f"{self.name} data: the {split} split is empty (rows per split: {self.manifest['rows']}). "
                "Use more rows (data.max_rows_per_file) or other data.split / data.split_fractions."
            )
        batch_size = self.loader.batches(train)
        sampler = WindowShuffleSampler(len(data), batch_size, train, self.shuffle_buffer, seed=self.seed)
        return self.loader.build(data, sampler)

    # -- helpers for subclasses ----------------------------------------------------------------
    @staticmethod
    def existing(folder: Path, *names: str) -> Path | None:
        """The first of ``names`` that is a file in ``folder``."""
        for n in names:
            if (folder / n).is_file():
                return folder / n
        return None


def require_path(module: CachedDataModule, expected: str) -> Path:
    """``module.path`` if it exists, else the not-found error naming ``expected``."""
    if not module.path.exists():
        raise module.not_found(expected)
    return module.path


# ------------------------------------------------------------------------------------------------
# Tabular logs (Criteo, Avazu)
# ------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class TabularDataModule(CachedDataModule):
    """Base of the tabular click logs preprocessed by :class:`TabularPreprocessor` in one stream.

    Args (beyond :class:`CachedDataModule`'s):
        numeric: numeric transform: ``log_squared``, ``log1p``, ``log_standardize`` or ``quantile``
            (see :mod:`recsys_lab.data.preprocess.numeric`).
        num_quantiles: buckets of the ``quantile`` transform.
        hash_buckets: hash string categorical values into this many buckets per field before
            counting (bounded memory for huge vocabularies such as Criteo 1TB's); None = exact.
    """

    numeric: str = "log_squared"
    num_quantiles: int = 16
    hash_buckets: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        num.check_transform(self.numeric)
        if self.num_quantiles < 2:
            raise ValueError(f"{self.name} data: num_quantiles={self.num_quantiles!r} must be >= 2")
        if self.hash_buckets is not None and not 2 <= self.hash_buckets <= 1 << 26:
            raise ValueError(
                f"{self.name} data: hash_buckets={self.hash_buckets!r} must be in [2, 2^26] or null"
            )
        self.num_quantiles = int(self.num_quantiles)

    @abstractmethod
    def spec(self) -> TabularSpec:
        """The dataset's features under this config."""

    @abstractmethod
    def sources(self, files: list[Path]) -> list[Source]:
        """How to read each input file (its layout)."""

    def serving_source(self, path: Path) -> Source:
        """How to read a file of rows to score (predict, evaluate): the training layouts, and
        where a dataset allows it, the same without the label column."""
        return self.sources([path])[0]

    @abstractmethod
    def fixed_splits(self, sources: list[Source]) -> list[int]:
        """``split=files``: the split index (0 train, 1 val, 2 test) of each source."""

    def time_rules(self, sources: list[Source]) -> list[SplitRule]:
        """``split=time``: by default the files are in time order, cut by ``split_fractions``."""
        return position_rules(sources, self.split_fractions, self.max_rows_per_file)

    def split_rules(self, sources: list[Source]) -> list[SplitRule]:
        if self.split == "random":
            return [
                SplitRule("random", seed=self.split_seed, fractions=self.split_fractions) for _ in sources
            ]
        if self.split == "time":
            return self.time_rules(sources)
        return [SplitRule("fixed", split=s) for s in self.fixed_splits(sources)]

    def options(self) -> TabularOptions:
        return TabularOptions(
            numeric=self.numeric,
            num_quantiles=self.num_quantiles,
            min_count=self.min_count,
            min_count_overrides=self.min_count_overrides,
            max_bad_fraction=self.max_bad_fraction,
            hash_buckets=self.hash_buckets,
        )

    def preprocess_config(self) -> dict[str, Any]:
        spec = self.spec()
        return {
            **self.common_config(),
            "numeric": self.numeric if spec.numeric else None,
            "num_quantiles": self.num_quantiles if spec.numeric and self.numeric == "quantile" else None,
            "features": list(spec.feature_order),
            "user": spec.user,
            # polars' hash is stable within a version only
            "hash_buckets": [self.hash_buckets, pl.__version__] if self.hash_buckets else None,
        }

    def expected_features(self) -> list[tuple[str, str]]:
        return feature_kinds(self.spec(), self.numeric)

    def build(self, files: list[Path], out: Path, report: BadRowReport) -> dict[str, Any]:
        sources = self.sources(files)
        rules = self.split_rules(sources)
        pre = TabularPreprocessor(self.spec(), self.options(), sources, rules, report, self.max_rows_per_file)
        return pre.run(out)


def position_rules(
    sources: list[Source], fractions: tuple[float, float, float], max_rows_per_file: int | None
) -> list[SplitRule]:
    """Time-ordered files cut by position: the first ``fractions[0]`` of all data lines train,
    then validation, then test (lines are counted first, without parsing)."""
    counts = [count_lines(s.path, 1 if s.layout.header else 0, max_rows_per_file) for s in sources]
    val_start, test_start = position_cuts(sum(counts), fractions)
    rules, offset = [], 0
    for n in counts:
        rules.append(SplitRule("position", cuts=(val_start - offset, test_start - offset)))
        offset += n
    return rules
