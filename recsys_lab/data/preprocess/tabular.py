"""Streaming preprocessing of tabular CTR logs (Criteo, Avazu) into the cache, in bounded memory.

Two passes, the raw text read once:

1. **Stream** (per block of lines): parse and validate (bad rows skipped and counted), derive
   columns, assign each row its split, turn categorical values into integer keys and count them
   on training rows, apply the per-row part of the numeric transform, and append the block to
   per-split staging files (int32 keys, float32 values, int8 labels).
2. **Finalize**: fit the vocabularies (min counts), the numeric statistics (means, quantiles)
   and the GAUC group ids, then stream the staging files once more, chunk by chunk, into the
   cache's final arrays (see :mod:`~recsys_lab.data.preprocess.cache`).

Memory holds a few blocks, the counts (one int64 per distinct value) and the string interners —
never the dataset. Everything is deterministic: ids depend on counts and values only, splits on a
seeded hash of (file, line), and blocks are processed in file order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import polars as pl

from recsys_lab.data.preprocess import numeric as num
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.cache import NpyWriter, write_json
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.readers import (
    LINE_COLUMN,
    Block,
    TextLayout,
    iter_blocks,
    line_texts,
    parse_block,
    prefetch,
)
from recsys_lab.data.preprocess.split import SPLITS, TRAIN, position_codes, random_codes, row_hash, row_key
from recsys_lab.data.preprocess.vocab import FittedVocab, IntCounter, KeyCounter, StringCounter
from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema

log = logging.getLogger(__name__)

_QUANTILE_SEED = 0x5EED
_HASH_SEED = 0xC7
_FINALIZE_CHUNK = 1 << 19


# ------------------------------------------------------------------------------------------------
# What to read and how
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input file and how to read it."""

    path: Path
    layout: TextLayout


@dataclass(frozen=True)
class SplitRule:
    """How the rows of one source are assigned to train / val / test.

    Attributes:
        kind: ``fixed`` (the whole file goes to ``split``), ``random`` (seeded hash of file and
            line, by ``fractions``), ``position`` (data-line position against ``cuts``: files in
            time order) or ``time`` (``column`` against ``boundaries``).
        split: the split index of a ``fixed`` rule (0 train, 1 val, 2 test).
        seed, fractions: of a ``random`` rule.
        cuts: first validation and first test position (0-based data line) of a ``position`` rule.
        column, boundaries: of a ``time`` rule: rows with ``column >= boundaries[0]`` are
            validation, ``>= boundaries[1]`` test.
    """

    kind: Literal["fixed", "random", "position", "time"]
    split: int = TRAIN
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cuts: tuple[int, int] = (0, 0)
    column: str | None = None
    boundaries: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Derived:
    """What a dataset's ``derive`` hook returns: the frame with new columns, and rows to drop as
    ``bad_value`` (bool ``[N]``) with a description of what is wrong with them."""

    frame: pl.DataFrame
    invalid: np.ndarray | None = None
    column: str = ""
    problem: str = ""


@dataclass(frozen=True)
class TabularSpec:
    """The features of a tabular dataset.

    Attributes:
        dataset: name (messages, cache folder).
        label: the 0/1 click column.
        categorical: string columns used as categorical features.
        numeric: numeric columns, transformed by ``TabularOptions.numeric``.
        derived: integer columns made by ``derive``, used as categorical features.
        feature_order: schema order of every feature (categorical, numeric and derived).
        roles: feature roles (e.g. the user feature).
        user: the categorical column whose values group rows for GAUC (``Batch.user``), or None.
        derive: hook ``frame -> Derived`` run on each parsed block (e.g. Avazu's hour -> weekday).
    """

    dataset: str
    label: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    feature_order: tuple[str, ...] = ()
    roles: Mapping[str, FeatureRole] = field(default_factory=dict)
    user: str | None = None
    derive: Callable[[pl.DataFrame], Derived] | None = None

    def __post_init__(self) -> None:
        known = set(self.categorical) | set(self.numeric) | set(self.derived)
        if set(self.feature_order) != known or len(self.feature_order) != len(known):
            raise ValueError(
                f"{self.dataset}: feature_order {self.feature_order} must list each feature once"
            )
        if self.user is not None and self.user not in self.categorical:
            raise ValueError(f"{self.dataset}: the user column {self.user!r} must be a categorical column")


@dataclass(frozen=True)
class TabularOptions:
    """Preprocessing choices (all of them enter the cache key).

    Attributes:
        numeric: the numeric transform (:mod:`~recsys_lab.data.preprocess.numeric`).
        num_quantiles: buckets of the ``quantile`` transform.
        min_count: values seen fewer times in the training split map to the OOV id.
        min_count_overrides: per-field min counts.
        max_bad_fraction: above this share of malformed rows, preprocessing stops with an error.
        quantile_sample: rows sampled to estimate quantiles.
        hash_buckets: if set, string categorical values (except the user field) are hashed into
            this many buckets before counting, which bounds memory whatever the number of distinct
            values (the DLRM ``max_ind_range`` approach for the Criteo 1TB logs; colliding values
            share an id). The hash is polars', stable within a polars version.
        block_bytes: bytes of text parsed at a time (memory vs. overhead).
    """

    numeric: str = "log_squared"
    num_quantiles: int = 16
    min_count: int = 1
    min_count_overrides: Mapping[str, int] = field(default_factory=dict)
    max_bad_fraction: float = 0.001
    quantile_sample: int = 500_000
    hash_buckets: int | None = None
    block_bytes: int = 32 << 20

    def min_count_for(self, name: str) -> int:
        return int(self.min_count_overrides.get(name, self.min_count))


def feature_kinds(spec: TabularSpec, numeric: str) -> list[tuple[str, str]]:
    """``(name, kind)`` of every feature in schema order under the numeric transform ``numeric``."""
    numeric_kind = FeatureKind.CATEGORICAL if num.is_categorical(numeric) else FeatureKind.NUMERIC
    return [
        (n, (numeric_kind if n in spec.numeric else FeatureKind.CATEGORICAL).value)
        for n in spec.feature_order
    ]


# ------------------------------------------------------------------------------------------------
# Per-block steps shared with serving (recsys_lab.data.preprocess.encode)
# ------------------------------------------------------------------------------------------------


def hashed_expr(column: str, buckets: int) -> pl.Expr:
    """``hash(value) mod buckets`` of a string column as Int64 (null kept): ``hash_buckets``."""
    expr = pl.col(column)
    return pl.when(expr.is_null()).then(None).otherwise((expr.hash(seed=_HASH_SEED) % buckets).cast(pl.Int64))


def derive_block(
    spec: TabularSpec, df: pl.DataFrame, block: Block, src: Source, report: BadRowReport
) -> pl.DataFrame:
    """Run ``spec.derive`` on a parsed block; rows it flags are dropped and reported as ``bad_value``."""
    assert spec.derive is not None
    out = spec.derive(df)
    if out.invalid is None or not out.invalid.any():
        return out.frame
    idx = np.flatnonzero(out.invalid)
    lines = df.get_column(LINE_COLUMN).to_numpy()[idx]
    want = report.examples_wanted("bad_value")
    texts = line_texts(block, lines[:want] - block.first_line, src.layout.encoding)
    values = df.get_column(out.column) if out.column in df.columns else None
    examples = [
        (
            str(src.path),
            int(line),
            f"{out.column} is {values[int(i)] if values is not None else '?'!r}, {out.problem}",
            t,
        )
        for i, line, t in zip(idx, lines, texts)
    ]
    report.add("bad_value", len(idx), examples)
    return out.frame.filter(pl.Series(~out.invalid))


def assign_splits(si: int, rule: SplitRule, positions: np.ndarray, df: pl.DataFrame) -> np.ndarray:
    """int8 split codes of a block's rows of the ``si``-th source under ``rule`` (``positions``:
    0-based data-line positions of the rows)."""
    n = df.height
    if rule.kind == "fixed":
        return np.full(n, rule.split, dtype=np.int8)
    if rule.kind == "random":
        return random_codes(row_key(si, positions), rule.seed, rule.fractions)
    if rule.kind == "position":
        return position_codes(positions, rule.cuts)
    if rule.kind == "time":
        assert rule.column is not None
        t = df.get_column(rule.column).to_numpy()
        codes = np.zeros(n, dtype=np.int8)
        codes[t >= rule.boundaries[0]] = 1
        codes[t >= rule.boundaries[1]] = 2
        return codes
    raise ValueError(f"unknown split rule {rule.kind!r}")


# ------------------------------------------------------------------------------------------------
# Staging
# ------------------------------------------------------------------------------------------------


class _Stage:
    """Per-split, per-column append-only files: the staged data of pass 1.

    Columns are 1-D arrays (int32 keys, float32 values, int8 label), one file each, so pass 1
    appends and pass 2 reads contiguous memory.
    """

    def __init__(self, folder: Path, columns: Mapping[str, type]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.dtypes = {name: np.dtype(dt) for name, dt in columns.items()}
        self.rows = dict.fromkeys(SPLITS, 0)
        self._files: dict[tuple[str, str], BinaryIO] = {
            (s, c): open(self._path(s, c), "wb") for s in SPLITS for c in self.dtypes
        }

    def _path(self, split: str, column: str) -> Path:
        return self.folder / f"{split}.{column}.bin"

    def append(self, sizes: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        """Append rows ``[N]`` of every column, sorted by split: the first ``sizes[0]`` rows are
        training rows, the next ``sizes[1]`` validation, the last ``sizes[2]`` test."""
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        for code, split in enumerate(SPLITS):
            lo, hi = int(bounds[code]), int(bounds[code + 1])
            if hi == lo:
                continue
            for name, arr in arrays.items():
                self._files[split, name].write(np.ascontiguousarray(arr[lo:hi], dtype=self.dtypes[name]).data)
            self.rows[split] += hi - lo

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def chunks(self, split: str, rows: int) -> Iterator[dict[str, np.ndarray]]:
        """Read a split back in chunks of ``rows`` rows: column name -> ``[m]``."""
        files = {c: open(self._path(split, c), "rb") for c in self.dtypes}
        try:
            left = self.rows[split]
            while left > 0:
                m = min(rows, left)
                left -= m
                yield {c: np.fromfile(f, dtype=self.dtypes[c], count=m) for c, f in files.items()}
        finally:
            for f in files.values():
                f.close()

    def delete(self) -> None:
        for p in self.folder.glob("*.bin"):
            p.unlink()
        self.folder.rmdir()


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


class _OrderedWorker:
    """Runs ``fn(item)`` for submitted items, in order, in one background thread.

    ``submit`` blocks while ``depth`` items wait; an exception in ``fn`` is re-raised by the next
    ``submit`` or on leaving the ``with`` block (which waits for the queue to drain).
    """

    def __init__(self, fn: Callable[[tuple], None], depth: int = 1) -> None:
        self.fn = fn
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="recsys-lab-stage", daemon=True)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.fn(item)
                except BaseException as e:  # re-raised in the submitting thread
                    self.error = e

    def submit(self, item: tuple) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def __enter__(self) -> _OrderedWorker:
        self.thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_type is None:
            raise self.error


class TabularPreprocessor:
    """Runs the two passes of the module docstring for one dataset.

    Args:
        spec: the dataset's features.
        options: preprocessing choices.
        sources: the input files, in order.
        rules: one :class:`SplitRule` per source.
        report: where bad rows are counted.
        max_rows_per_file: read at most this many data lines of each file (None = all).
    """

    def __init__(
        self,
        spec: TabularSpec,
        options: TabularOptions,
        sources: Sequence[Source],
        rules: Sequence[SplitRule],
        report: BadRowReport,
        max_rows_per_file: int | None = None,
    ) -> None:
        if len(sources) != len(rules) or not sources:
            raise ValueError("TabularPreprocessor needs one split rule per source, and at least one source")
        num.check_transform(options.numeric)
        self.spec, self.options, self.sources, self.rules = spec, options, list(sources), list(rules)
        self.report = report
        self.max_rows_per_file = max_rows_per_file
        self.numeric_as_keys = options.numeric == "log_squared"
        # Columns staged as integer keys (and counted), and as float values.
        self.key_columns = [
            c
            for c in spec.feature_order
            if c in spec.categorical or c in spec.derived or (self.numeric_as_keys and c in spec.numeric)
        ]
        self.value_columns = (
            [] if self.numeric_as_keys else [c for c in spec.feature_order if c in spec.numeric]
        )
        # Hashed string fields (``hash_buckets``) are counted like integers; the user field never is.
        self.hashed = {c for c in spec.categorical if options.hash_buckets is not None and c != spec.user}
        self.counters: dict[str, KeyCounter] = {
            c: (StringCounter if c in spec.categorical and c not in self.hashed else IntCounter)(
                c, count_all=c == spec.user
            )
            for c in self.key_columns
        }
        self.moments = num.Moments(len(self.value_columns))
        self.sample = num.BottomKSample(options.quantile_sample, len(self.value_columns))

    # -- pass 1 --------------------------------------------------------------------------------
    def _stream(self, stage: _Stage) -> None:
        """Pass 1. Parsing and interning (polars, GIL released) run here; the numpy work of each
        block (split codes, counts, staging writes) runs in order in a second thread, overlapping
        the parsing of the next block."""
        string_keys = [c for c in self.key_columns if c not in self.spec.numeric]
        key_exprs = [self.counters[c].key_expr(self._hashed(c)).alias(c) for c in string_keys]
        started = time.perf_counter()
        last_log = started
        with _OrderedWorker(lambda item: self._consume(stage, *item)) as worker:
            for si, (src, rule) in enumerate(zip(self.sources, self.rules)):
                read_before, bad_before = self.report.rows_read, self.report.bad_rows
                skip = 1 if src.layout.header else 0
                blocks = iter_blocks(
                    src.path,
                    skip,
                    self.options.block_bytes,
                    self.max_rows_per_file,
                    count_separator=src.layout.separator,
                )
                for block in prefetch(blocks):
                    df = parse_block(block, src.layout, self.report, str(src.path))
                    if self.spec.derive is not None and df.height:
                        df = self._derive(df, block, src)
                    if df.height == 0:
                        continue
                    worker.submit((si, rule, skip, df, df.select(key_exprs)))
                    now = time.perf_counter()
                    if now - last_log > 30:
                        last_log = now
                        log.info(
                            "%s: %d rows read (%.0f rows/s), file %d/%d", self.spec.dataset, self.report.rows_read,
                            self.report.rows_read / (now - started), si + 1, len(self.sources),
                        )  # fmt: skip
                read = self.report.rows_read - read_before
                if read == 0:
                    raise DataError(
                        f"{src.path} is empty: no data lines{' after its header' if skip else ''}. "
                        f"Expected the {src.layout.name} layout; check the file (an interrupted download?)."
                    )
                if self.report.bad_rows - bad_before == read and self.options.max_bad_fraction >= 1:
                    raise DataError(f"{src.path}: none of its {read} lines is a valid {src.layout.name} row.")

    def _consume(
        self, stage: _Stage, si: int, rule: SplitRule, skip: int, df: pl.DataFrame, keys_df: pl.DataFrame
    ) -> None:
        """The numpy part of pass 1 for one parsed block (in file order)."""
        lines = df.get_column(LINE_COLUMN).to_numpy()
        codes = self._assign(si, rule, lines - (1 + skip), df)
        columns: dict[str, np.ndarray] = {
            f"key:{c}": keys_df.get_column(c).to_numpy() for c in keys_df.columns
        }
        for c in self.spec.numeric:
            x = df.get_column(c).to_numpy()  # float64, NaN = missing
            if self.numeric_as_keys:
                columns[f"key:{c}"] = num.log_squared_keys(x)
            else:
                columns[f"value:{c}"] = num.staged_values(self.options.numeric, x)
        columns["label"] = df.get_column(self.spec.label).to_numpy()
        # Rows sorted by split (stable): training rows first, so counting and staging take slices.
        sizes = np.bincount(codes, minlength=len(SPLITS))
        if sizes.max() < len(codes):
            order = np.argsort(codes, kind="stable")
            columns = {name: arr[order] for name, arr in columns.items()}
            lines = lines[order]
        n_train = int(sizes[TRAIN])
        for c in self.key_columns:
            self.counters[c].update(columns[f"key:{c}"], n_train)
        if self.value_columns and n_train:
            values = np.stack([columns[f"value:{c}"][:n_train] for c in self.value_columns], axis=1)
            if self.options.numeric == "log_standardize":
                self.moments.update(values)
            else:  # quantile
                self.sample.update(row_hash(row_key(si, lines[:n_train]), _QUANTILE_SEED), values)
        stage.append(sizes, columns)

    def _hashed(self, column: str) -> pl.Expr:
        """The column, or for a hashed field its bucket (see :func:`hashed_expr`)."""
        if column not in self.hashed:
            return pl.col(column)
        assert self.options.hash_buckets is not None
        return hashed_expr(column, self.options.hash_buckets)

    def _stage_columns(self) -> dict[str, type]:
        cols: dict[str, type] = {f"key:{c}": np.int32 for c in self.key_columns}
        cols.update({f"value:{c}": np.float32 for c in self.value_columns})
        cols["label"] = np.int8
        return cols

    def _derive(self, df: pl.DataFrame, block: Block, src: Source) -> pl.DataFrame:
        return derive_block(self.spec, df, block, src, self.report)

    @staticmethod
    def _assign(si: int, rule: SplitRule, positions: np.ndarray, df: pl.DataFrame) -> np.ndarray:
        return assign_splits(si, rule, positions, df)

    # -- pass 2 --------------------------------------------------------------------------------
    def run(self, out: Path) -> dict:
        """Build the cache's arrays, schema, vocabularies and transforms in ``out``; return a
        summary for the manifest (rows per split, timings). Raises on too many bad rows."""
        started = time.perf_counter()
        stage = _Stage(out / "_staging", self._stage_columns())
        try:
            self._stream(stage)
        finally:
            stage.close()
        streamed = time.perf_counter()
        self.report.log()
        self.report.check(self.options.max_bad_fraction)
        if stage.rows["train"] == 0:
            raise DataError(
                f"{self.spec.dataset}: no training rows ({stage.rows}). Use more rows (data.max_rows_per_file), "
                "other data.split_fractions, or another data.split."
            )
        for split, n in stage.rows.items():
            if n == 0:
                log.warning("%s: the %s split is empty (%s)", self.spec.dataset, split, stage.rows)
        _, summary = self._finalize(stage, out)
        stage.delete()
        done = time.perf_counter()
        rows = self.report.rows_read
        summary.update(
            {
                "rows": dict(stage.rows),
                "seconds": {
                    "stream": streamed - started,
                    "finalize": done - streamed,
                    "total": done - started,
                },
                "rows_per_s": rows / max(done - started, 1e-9),
            }
        )
        log.info(
            "%s: preprocessed %d rows in %.1f s (%.0f rows/s): %s", self.spec.dataset, rows, done - started,
            summary["rows_per_s"], ", ".join(f"{k} {v}" for k, v in stage.rows.items()),
        )  # fmt: skip
        return summary

    def _finalize(self, stage: _Stage, out: Path) -> tuple[Schema, dict]:
        o = self.options
        vocabs: dict[str, FittedVocab] = {
            c: self.counters[c].fit(o.min_count_for(c)) for c in self.key_columns
        }
        user_ids = self.counters[self.spec.user].group_ids() if self.spec.user else None
        transforms: dict = {"numeric": o.numeric}
        boundaries: dict[str, np.ndarray] = {}
        mean = std = np.zeros(0)
        if o.numeric == "quantile":
            sample = self.sample.sample()
            for j, c in enumerate(self.value_columns):
                boundaries[c] = num.quantile_boundaries(sample[:, j], o.num_quantiles)
            transforms["quantile_boundaries"] = {c: b.tolist() for c, b in boundaries.items()}
        elif o.numeric == "log_standardize":
            mean, std = self.moments.mean_std()
            transforms["mean"] = dict(zip(self.value_columns, mean.tolist()))
            transforms["std"] = dict(zip(self.value_columns, std.tolist()))

        features = []
        for name, kind in feature_kinds(self.spec, o.numeric):
            if kind == FeatureKind.NUMERIC.value:
                features.append(
                    Feature(name, FeatureKind.NUMERIC, 0, self.spec.roles.get(name, FeatureRole.NONE))
                )
                continue
            size = vocabs[name].size if name in vocabs else 3 + len(boundaries[name])
            features.append(
                Feature(name, FeatureKind.CATEGORICAL, size, self.spec.roles.get(name, FeatureRole.NONE))
            )
        schema = Schema(tuple(features))
        cat_names = [f.name for f in schema.categorical]
        dense_names = [f.name for f in schema.numeric]
        value_index = {c: j for j, c in enumerate(self.value_columns)}

        for split in SPLITS:
            n = stage.rows[split]
            (out / split).mkdir()
            writers = {
                "sparse": NpyWriter(out / split / "sparse.npy", np.int32, (n, len(cat_names))),
                "dense": NpyWriter(out / split / "dense.npy", np.float32, (n, len(dense_names))),
                "click": NpyWriter(out / split / "click.npy", np.float32, (n,)),
            }
            if user_ids is not None:
                writers["user"] = NpyWriter(out / split / "user.npy", np.int64, (n,))
            for chunk in stage.chunks(split, _FINALIZE_CHUNK):
                m = len(chunk["label"])
                by_column = np.empty((len(cat_names), m), dtype=np.int32)  # [F, m]: contiguous writes
                for j, c in enumerate(cat_names):
                    if c in vocabs:
                        by_column[j] = vocabs[c].encode(chunk[f"key:{c}"])
                    else:
                        by_column[j] = num.bucketize(chunk[f"value:{c}"], boundaries[c])
                sparse = by_column.T  # [m, F]; one transposition when written (faster than strided writes)
                dense = np.empty((m, len(dense_names)), dtype=np.float32)
                for j, c in enumerate(dense_names):
                    v = chunk[f"value:{c}"]
                    if o.numeric == "log_standardize":
                        v = (v - mean[value_index[c]]) / std[value_index[c]]
                    dense[:, j] = np.nan_to_num(v, nan=0.0)
                writers["sparse"].append(sparse)
                writers["dense"].append(dense)
                writers["click"].append(chunk["label"].astype(np.float32))
                if user_ids is not None:
                    writers["user"].append(user_ids.encode(chunk[f"key:{self.spec.user}"]).astype(np.int64))
            for w in writers.values():
                w.close()

        schema.save(out / "schema.json")
        frames = [vocabs[c].frame() for c in self.key_columns]
        pl.concat(frames).write_parquet(out / "vocab.parquet")
        write_json(out / "transforms.json", transforms)
        write_json(out / "bad_rows.json", self.report.to_dict())
        summary = {
            "vocab_sizes": {f.name: f.vocab_size for f in schema.categorical},
            "num_user_groups": 0 if user_ids is None else len(user_ids.values),
        }
        return schema, summary
