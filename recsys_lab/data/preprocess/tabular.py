"""Streaming preprocessing of tabular CTR logs (Criteo, Avazu, your own files) into the cache, in bounded memory.

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
    iter_parquet_frames,
    line_texts,
    parse_block,
    prefetch,
)
from recsys_lab.data.preprocess.split import SPLITS, TRAIN, position_codes, random_codes, row_hash, row_key
from recsys_lab.data.preprocess.vocab import MISSING_ID, FittedVocab, IntCounter, KeyCounter, StringCounter
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
    """One input file and how to read it: delimited text (``format="text"``) or parquet, whose
    columns are read as ``layout`` names them (list columns joined by their separators)."""

    path: Path
    layout: TextLayout
    format: Literal["text", "parquet"] = "text"


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
    ``bad_value`` (bool ``[N]``) with a description of what is wrong with them; ``more`` holds
    further ``(invalid, column, problem)`` checks of the same frame."""

    frame: pl.DataFrame
    invalid: np.ndarray | None = None
    column: str = ""
    problem: str = ""
    more: tuple[tuple[np.ndarray, str, str], ...] = ()


@dataclass(frozen=True)
class ListColumn:
    """A column holding a list of values per row, joined by ``separator`` (``"a|b|c"``).

    Attributes:
        name: the column (and feature) name.
        separator: what joins the values; empty values are dropped.
        max_len: multi-valued features keep their first ``max_len`` values.
        vocab: use this categorical column's vocabulary (ids shared, nothing counted) instead of
            counting the list's own values (history columns of an item or category field).
    """

    name: str
    separator: str = "|"
    max_len: int = 16
    vocab: str | None = None


@dataclass(frozen=True)
class HistorySpec:
    """Behaviour histories given per row as list columns (``Batch.history``).

    Attributes:
        columns: the event columns (``Jagged.values`` columns, schema order); every one lists the
            same number of events per row.
        timestamps: a list column of event times (numbers), or None (times = positions 0, 1, ...).
        order: ``oldest_first`` or ``newest_first``: how the lists are ordered in the file (the
            cache stores them oldest first, as ``Jagged`` wants).
    """

    columns: tuple[ListColumn, ...]
    timestamps: ListColumn | None = None
    order: Literal["oldest_first", "newest_first"] = "oldest_first"


@dataclass(frozen=True)
class TabularSpec:
    """The features of a tabular dataset.

    Attributes:
        dataset: name (messages, cache folder).
        label: the 0/1 click column (the ``click`` label).
        extra_labels: more 0/1 label columns, label name -> column.
        categorical: string columns used as categorical features.
        numeric: numeric columns, transformed by ``TabularOptions.numeric``.
        derived: integer columns made by ``derive``, used as categorical features.
        multi_valued: list columns used as multi-valued features (``Batch.multi``).
        history: list columns read into ``Batch.history``.
        feature_order: schema order of every feature (categorical, numeric, derived and
            multi-valued; history columns follow, in ``history.columns`` order).
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
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    multi_valued: tuple[ListColumn, ...] = ()
    history: HistorySpec | None = None

    @property
    def list_columns(self) -> tuple[ListColumn, ...]:
        """Every list column: multi-valued, history events, history timestamps."""
        h = self.history
        return self.multi_valued + (h.columns if h else ()) + ((h.timestamps,) if h and h.timestamps else ())

    def __post_init__(self) -> None:
        known = (
            set(self.categorical)
            | set(self.numeric)
            | set(self.derived)
            | {c.name for c in self.multi_valued}
        )
        if set(self.feature_order) != known or len(self.feature_order) != len(known):
            raise ValueError(
                f"{self.dataset}: feature_order {self.feature_order} must list each feature once"
            )
        if self.user is not None and self.user not in self.categorical:
            raise ValueError(f"{self.dataset}: the user column {self.user!r} must be a categorical column")
        for c in self.list_columns:
            if c.vocab is not None and c.vocab not in self.categorical:
                raise ValueError(
                    f"{self.dataset}: list column {c.name!r} shares the vocabulary of {c.vocab!r}, "
                    f"which is not a categorical column ({list(self.categorical)})"
                )


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
    multi = {c.name for c in spec.multi_valued}

    def kind(n: str) -> FeatureKind:
        if n in multi:
            return FeatureKind.MULTI_VALUED
        return numeric_kind if n in spec.numeric else FeatureKind.CATEGORICAL

    out = [(n, kind(n).value) for n in spec.feature_order]
    if spec.history is not None:
        out += [(c.name, FeatureKind.SEQUENCE.value) for c in spec.history.columns]
    return out


# ------------------------------------------------------------------------------------------------
# Per-block steps shared with serving (recsys_lab.data.preprocess.encode)
# ------------------------------------------------------------------------------------------------


def hashed_expr(column: str | pl.Expr, buckets: int) -> pl.Expr:
    """``hash(value) mod buckets`` of a string column (or expression) as Int64 (null kept):
    ``hash_buckets``."""
    expr = pl.col(column) if isinstance(column, str) else column
    return pl.when(expr.is_null()).then(None).otherwise((expr.hash(seed=_HASH_SEED) % buckets).cast(pl.Int64))


def derive_block(
    spec: TabularSpec,
    df: pl.DataFrame,
    texts: Callable[[np.ndarray], list[str]],
    src: Source,
    report: BadRowReport,
) -> pl.DataFrame:
    """Run ``spec.derive`` on a parsed block; rows any of its checks flags are dropped and reported
    as ``bad_value`` (``texts(lines)``: the raw text of physical lines, for the report's examples)."""
    assert spec.derive is not None
    out = spec.derive(df)
    checks = ((out.invalid, out.column, out.problem), *out.more) if out.invalid is not None else out.more
    bad_any = np.zeros(df.height, dtype=bool)
    for invalid, column, problem in checks:
        idx = np.flatnonzero(invalid & ~bad_any)
        bad_any |= invalid
        if len(idx) == 0:
            continue
        lines = df.get_column(LINE_COLUMN).to_numpy()[idx]
        want = report.examples_wanted("bad_value")
        values = df.get_column(column) if column in df.columns else None
        examples = [
            (
                str(src.path),
                int(line),
                f"{column} is {values[int(i)] if values is not None else '?'!r}, {problem}",
                t,
            )
            for i, line, t in zip(idx, lines, texts(lines[:want]))
        ]
        report.add("bad_value", len(idx), examples)
    return out.frame.filter(pl.Series(~bad_any)) if bad_any.any() else out.frame


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
    appends and pass 2 reads contiguous memory. A ragged (list) column ``r`` is two files: the row
    column ``len:r`` (values per row) and the flat values ``flat:r`` of all rows, in row order.
    """

    def __init__(
        self, folder: Path, columns: Mapping[str, type], ragged: Mapping[str, type] | None = None
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ragged = dict(ragged or {})
        self.dtypes = {name: np.dtype(dt) for name, dt in columns.items()}
        self.dtypes.update({f"len:{r}": np.dtype(np.int32) for r in self.ragged})
        self.flat_dtypes = {f"flat:{r}": np.dtype(dt) for r, dt in self.ragged.items()}
        self.rows = dict.fromkeys(SPLITS, 0)
        self.flat_rows = {(s, f): 0 for s in SPLITS for f in self.flat_dtypes}
        self._files: dict[tuple[str, str], BinaryIO] = {
            (s, c): open(self._path(s, c), "wb") for s in SPLITS for c in (*self.dtypes, *self.flat_dtypes)
        }

    def _path(self, split: str, column: str) -> Path:
        return self.folder / f"{split}.{column}.bin"

    def append(self, sizes: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        """Append rows ``[N]`` of every column, sorted by split: the first ``sizes[0]`` rows are
        training rows, the next ``sizes[1]`` validation, the last ``sizes[2]`` test. Ragged columns
        come as ``len:r`` ``[N]`` and ``flat:r`` ``[sum of len:r]``."""
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        flat_bounds = {
            f"flat:{r}": np.concatenate([[0], np.cumsum(arrays[f"len:{r}"], dtype=np.int64)])
            for r in self.ragged
        }
        for code, split in enumerate(SPLITS):
            lo, hi = int(bounds[code]), int(bounds[code + 1])
            if hi == lo:
                continue
            for name, arr in arrays.items():
                if name in self.flat_dtypes:
                    flo, fhi = int(flat_bounds[name][lo]), int(flat_bounds[name][hi])
                    self._files[split, name].write(
                        np.ascontiguousarray(arr[flo:fhi], dtype=self.flat_dtypes[name]).data
                    )
                    self.flat_rows[split, name] += fhi - flo
                    continue
                self._files[split, name].write(np.ascontiguousarray(arr[lo:hi], dtype=self.dtypes[name]).data)
            self.rows[split] += hi - lo

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def chunks(self, split: str, rows: int) -> Iterator[dict[str, np.ndarray]]:
        """Read a split back in chunks of ``rows`` rows: column name -> ``[m]`` (and each ragged
        column's ``flat:r``, the flat values of those rows)."""
        files = {c: open(self._path(split, c), "rb") for c in (*self.dtypes, *self.flat_dtypes)}
        try:
            left = self.rows[split]
            while left > 0:
                m = min(rows, left)
                left -= m
                chunk = {c: np.fromfile(files[c], dtype=dt, count=m) for c, dt in self.dtypes.items()}
                for r in self.ragged:
                    count = int(chunk[f"len:{r}"].sum())
                    chunk[f"flat:{r}"] = np.fromfile(
                        files[f"flat:{r}"], dtype=self.flat_dtypes[f"flat:{r}"], count=count
                    )
                yield chunk
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
        # List columns with a vocabulary of their own are counted like categorical columns.
        self.own_vocab_lists = [
            c.name for c in spec.list_columns if c.vocab is None and not self._is_timestamps(c.name)
        ]
        for name in self.own_vocab_lists:
            self.counters[name] = StringCounter(name)
        self.moments = num.Moments(len(self.value_columns))
        self.sample = num.BottomKSample(options.quantile_sample, len(self.value_columns))

    def _is_timestamps(self, name: str) -> bool:
        h = self.spec.history
        return h is not None and h.timestamps is not None and h.timestamps.name == name

    def _list_exprs(self) -> list[pl.Expr]:
        """List columns -> List[Int32] keys (List[Float64] times); empty values dropped."""
        exprs = []
        for c in self.spec.list_columns:
            element = pl.element().str.strip_chars()
            element = element.filter(element != "")
            if self._is_timestamps(c.name):
                keys = element.cast(pl.Float64, strict=False).fill_null(0.0)
            else:
                vocab = c.vocab or c.name  # a shared vocabulary of a hashed field hashes the values too
                keys = self.counters[vocab].key_expr(self._hashed(vocab, element))
            exprs.append(pl.col(c.name).str.split(c.separator).list.eval(keys).alias(c.name))
        return exprs

    def _frames(
        self, src: Source, skip: int
    ) -> Iterator[tuple[pl.DataFrame, Callable[[np.ndarray], list[str]]]]:
        """The parsed good rows of ``src`` in slices, with a function giving the text of rows by
        physical line (for bad-row reports)."""
        if src.format == "parquet":
            separators = {c.name: c.separator for c in self.spec.list_columns}
            yield from iter_parquet_frames(
                src.path, src.layout, self.report, separators, max_rows=self.max_rows_per_file
            )
            return
        blocks = iter_blocks(
            src.path,
            skip,
            self.options.block_bytes,
            self.max_rows_per_file,
            count_separator=src.layout.separator,
        )
        for block in prefetch(blocks):

            def texts(lines: np.ndarray, block: Block = block) -> list[str]:
                return line_texts(block, lines - block.first_line, src.layout.encoding)

            yield parse_block(block, src.layout, self.report, str(src.path)), texts

    # -- pass 1 --------------------------------------------------------------------------------
    def _stream(self, stage: _Stage) -> None:
        """Pass 1. Parsing and interning (polars, GIL released) run here; the numpy work of each
        block (split codes, counts, staging writes) runs in order in a second thread, overlapping
        the parsing of the next block."""
        string_keys = [c for c in self.key_columns if c not in self.spec.numeric]
        key_exprs = [self.counters[c].key_expr(self._hashed(c)).alias(c) for c in string_keys]
        key_exprs += self._list_exprs()
        started = time.perf_counter()
        last_log = started
        with _OrderedWorker(lambda item: self._consume(stage, *item)) as worker:
            for si, (src, rule) in enumerate(zip(self.sources, self.rules)):
                read_before, bad_before = self.report.rows_read, self.report.bad_rows
                skip = 1 if src.layout.header and src.format == "text" else 0
                for df, texts in self._frames(src, skip):
                    if self.spec.derive is not None and df.height:
                        df = self._derive(df, texts, src)
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
            f"key:{c}": keys_df.get_column(c).to_numpy() for c in self.key_columns if c in keys_df.columns
        }
        for c in self.spec.numeric:
            x = df.get_column(c).to_numpy()  # float64, NaN = missing
            if self.numeric_as_keys:
                columns[f"key:{c}"] = num.log_squared_keys(x)
            else:
                columns[f"value:{c}"] = num.staged_values(self.options.numeric, x)
        columns["label"] = df.get_column(self.spec.label).to_numpy()
        for name, column in self.spec.extra_labels.items():
            columns[f"label:{name}"] = df.get_column(column).to_numpy()
        # Rows sorted by split (stable): training rows first, so counting and staging take slices.
        sizes = np.bincount(codes, minlength=len(SPLITS))
        lists = {c.name: keys_df.get_column(c.name) for c in self.spec.list_columns}
        if sizes.max() < len(codes):
            order = np.argsort(codes, kind="stable")
            columns = {name: arr[order] for name, arr in columns.items()}
            lists = {name: lst.gather(order) for name, lst in lists.items()}
            lines = lines[order]
        n_train = int(sizes[TRAIN])
        for name, lst in lists.items():
            lengths = lst.list.len().fill_null(0).to_numpy().astype(np.int32)
            columns[f"len:{name}"] = lengths
            columns[f"flat:{name}"] = lst.explode().drop_nulls().to_numpy()
            if name in self.own_vocab_lists:
                self.counters[name].update(columns[f"flat:{name}"], int(lengths[:n_train].sum()))
        for c in self.key_columns:
            self.counters[c].update(columns[f"key:{c}"], n_train)
        if self.value_columns and n_train:
            values = np.stack([columns[f"value:{c}"][:n_train] for c in self.value_columns], axis=1)
            if self.options.numeric == "log_standardize":
                self.moments.update(values)
            else:  # quantile
                self.sample.update(row_hash(row_key(si, lines[:n_train]), _QUANTILE_SEED), values)
        stage.append(sizes, columns)

    def _hashed(self, column: str, expr: pl.Expr | None = None) -> pl.Expr:
        """The column (or ``expr``, values of that field), or for a hashed field its bucket
        ``hash(value) mod hash_buckets`` (null kept)."""
        expr = pl.col(column) if expr is None else expr
        if column not in self.hashed:
            return expr
        assert self.options.hash_buckets is not None
        return hashed_expr(expr, self.options.hash_buckets)

    def _stage_ragged(self) -> dict[str, type]:
        return {
            c.name: (np.float64 if self._is_timestamps(c.name) else np.int32) for c in self.spec.list_columns
        }

    def _stage_columns(self) -> dict[str, type]:
        cols: dict[str, type] = {f"key:{c}": np.int32 for c in self.key_columns}
        cols.update({f"value:{c}": np.float32 for c in self.value_columns})
        cols["label"] = np.int8
        cols.update({f"label:{name}": np.int8 for name in self.spec.extra_labels})
        return cols

    def _derive(
        self, df: pl.DataFrame, texts: Callable[[np.ndarray], list[str]], src: Source
    ) -> pl.DataFrame:
        return derive_block(self.spec, df, texts, src, self.report)

    @staticmethod
    def _assign(si: int, rule: SplitRule, positions: np.ndarray, df: pl.DataFrame) -> np.ndarray:
        return assign_splits(si, rule, positions, df)

    # -- pass 2 --------------------------------------------------------------------------------
    def run(self, out: Path) -> dict:
        """Build the cache's arrays, schema, vocabularies and transforms in ``out``; return a
        summary for the manifest (rows per split, timings). Raises on too many bad rows."""
        started = time.perf_counter()
        stage = _Stage(out / "_staging", self._stage_columns(), self._stage_ragged())
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
            c: self.counters[c].fit(o.min_count_for(c)) for c in (*self.key_columns, *self.own_vocab_lists)
        }
        for c in self.spec.list_columns:
            if c.vocab is not None:
                vocabs[c.name] = vocabs[c.vocab]  # shared ids (e.g. a history of the item column)
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
            role = self.spec.roles.get(name, FeatureRole.NONE)
            if kind == FeatureKind.NUMERIC.value:
                features.append(Feature(name, FeatureKind.NUMERIC, 0, role))
                continue
            size = vocabs[name].size if name in vocabs else 3 + len(boundaries[name])
            features.append(Feature(name, FeatureKind(kind), size, role))
        history = self.spec.history
        schema = Schema(
            tuple(features),
            labels=("click", *self.spec.extra_labels),
            action_names=("event",) if history else (),
        )
        multi = self.spec.multi_valued
        multi_width = max((c.max_len for c in multi), default=0)
        events: dict[str, NpyWriter] = {}
        event_offset = 0
        if history is not None:
            total = sum(stage.flat_rows[split, f"flat:{history.columns[0].name}"] for split in SPLITS)
            (out / "events").mkdir()  # recsys_lab.data.cached.EVENTS
            events = {
                "values": NpyWriter(out / "events" / "values.npy", np.int32, (total, len(history.columns))),
                "actions": NpyWriter(out / "events" / "actions.npy", np.int8, (total,)),
                "timestamps": NpyWriter(out / "events" / "timestamps.npy", np.int64, (total,)),
            }
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
            for name in self.spec.extra_labels:
                writers[name] = NpyWriter(out / split / f"{name}.npy", np.float32, (n,))
            if multi:
                writers["multi"] = NpyWriter(
                    out / split / "multi.npy", np.int32, (n, len(multi), multi_width)
                )
            if history is not None:
                writers["hist_start"] = NpyWriter(out / split / "hist_start.npy", np.int64, (n,))
                writers["hist_end"] = NpyWriter(out / split / "hist_end.npy", np.int64, (n,))
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
                for name in self.spec.extra_labels:
                    writers[name].append(chunk[f"label:{name}"].astype(np.float32))
                if multi:
                    block = np.full((m, len(multi), multi_width), -1, dtype=np.int32)  # [m, M, L]
                    for j, c in enumerate(multi):
                        lengths = chunk[f"len:{c.name}"]
                        ids = vocabs[c.name].encode(chunk[f"flat:{c.name}"])
                        block[:, j, :] = pad_lists(lengths, ids, c.max_len, multi_width)
                    writers["multi"].append(block)
                if history is not None:
                    event_offset = self._write_events(chunk, vocabs, writers, events, event_offset)
            for w in writers.values():
                w.close()
        for w in events.values():
            w.close()

        schema.save(out / "schema.json")
        frames = [vocabs[c].frame() for c in (*self.key_columns, *self.own_vocab_lists)]
        pl.concat(frames).write_parquet(out / "vocab.parquet")
        write_json(out / "transforms.json", transforms)
        write_json(out / "bad_rows.json", self.report.to_dict())
        summary = {
            "vocab_sizes": {f.name: f.vocab_size for f in schema.categorical},
            "num_user_groups": 0 if user_ids is None else len(user_ids.values),
        }
        return schema, summary

    def _write_events(
        self,
        chunk: dict[str, np.ndarray],
        vocabs: Mapping[str, FittedVocab],
        writers: Mapping[str, NpyWriter],
        events: Mapping[str, NpyWriter],
        offset: int,
    ) -> int:
        """Append a chunk's history events (oldest first) and its rows' ``hist_start``/``hist_end``
        (rows of the global events arrays); return the new number of events written."""
        history = self.spec.history
        assert history is not None
        lengths = chunk[f"len:{history.columns[0].name}"].astype(np.int64)  # [m]
        starts = offset + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        within = np.arange(int(lengths.sum())) - np.repeat(starts - offset, lengths)  # position in its row
        order = np.arange(len(within))
        if history.order == "newest_first":  # reverse each row's events: oldest first in the cache
            order = np.repeat(starts - offset, lengths) + np.repeat(lengths, lengths) - 1 - within
        values = np.stack(
            [vocabs[c.name].encode(chunk[f"flat:{c.name}"])[order] for c in history.columns], axis=1
        )  # [n_events, E]
        if history.timestamps is not None:
            times = chunk[f"flat:{history.timestamps.name}"][order].astype(np.int64)
        else:
            times = within.astype(np.int64)  # positions: oldest event 0
        events["values"].append(values)
        events["actions"].append(np.ones(len(values), dtype=np.int8))  # one action type, "event"
        events["timestamps"].append(times)
        writers["hist_start"].append(starts)
        writers["hist_end"].append(starts + lengths)
        return offset + int(lengths.sum())


def pad_lists(lengths: np.ndarray, ids: np.ndarray, max_len: int, width: int) -> np.ndarray:
    """Rows of ids from flat lists: ``lengths`` ``[m]`` and the flat ``ids`` -> int32 ``[m, width]``
    holding each row's first ``max_len`` ids, padded with -1; an empty list becomes ``[MISSING_ID]``."""
    m = len(lengths)
    out = np.full((m, width), -1, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]])
    row = np.repeat(np.arange(m), lengths)
    pos = np.arange(len(ids)) - np.repeat(starts, lengths)
    keep = pos < max_len
    out[row[keep], pos[keep]] = ids[keep]
    out[lengths == 0, 0] = MISSING_ID
    return out
