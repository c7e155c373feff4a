"""``data=tabular``: the user's own click logs — CSV, TSV or parquet — with the columns declared in
the config (``conf/data/tabular.yaml``; docs/data.md, "Your own data").

``data.path`` is one file, a folder of files (read in name order as one dataset), or a folder
holding ``train.*``, ``valid.*`` (or ``val.*``) and ``test.*`` (``data.split=files``). Text files
need a header naming the columns; ``.tsv``/``.tab`` files are tab-separated, ``.csv`` comma-separated
(``data.separator`` overrides), plain or gzip. Columns not declared are ignored.

Column kinds:

- ``labels``: label name -> 0/1 column; the first is the primary label and must be named ``click``
  (the batch contract); more labels are for multi-task models (docs/multitask.md);
- ``categorical``: one value per row -> a vocabulary (min counts, 0 = OOV, 1 = missing);
- ``numeric_columns``: numbers, transformed by ``data.numeric`` (as for Criteo);
- ``multi_valued``: a set of values per row joined by a separator (``"sports|news"``), each field
  pooled by the models (``Batch.multi``);
- ``history``: behaviour-history columns, one list of events per row (``"a12|a7|a3"``, oldest
  first unless ``history_order=newest_first``), with optional ``history_timestamps``; a column
  named ``hist_<c>`` for a categorical column ``<c>`` shares ``<c>``'s ids, so sequence models
  match the history against the candidate (``Batch.history``);
- ``user``: the categorical column grouping GAUC (``Batch.user``); ``item``: the item column (role);
- ``time``: a column of times (numbers, or ISO date-times such as ``2024-05-01 13:00:00``) for
  ``data.split=time``.

Everything else — the two-pass streaming preprocessing, the cache, bad-row accounting,
vocabularies and numeric transforms — is Criteo's (:class:`~recsys_lab.data.cached.TabularDataModule`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys_lab.data.cached import TabularDataModule, require_path
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.readers import (
    TextLayout,
    first_line,
    iter_blocks,
    iter_parquet_frames,
    parquet_columns,
    parse_block,
)
from recsys_lab.data.preprocess.split import TEST, TRAIN, VAL
from recsys_lab.data.preprocess.tabular import (
    Derived,
    HistorySpec,
    ListColumn,
    Source,
    SplitRule,
    TabularSpec,
)
from recsys_lab.data.schema import FeatureRole

TIME_COLUMN = "_time"
"""The parsed time (float seconds or the number as written) that ``split=time`` cuts on."""
HISTORY_PREFIX = "hist_"
_DATA_FILE = re.compile(r"\.(csv|tsv|tab|txt|parquet|pq)(\.gz)?$", re.IGNORECASE)
_FILE_SPLITS = {"train": TRAIN, "valid": VAL, "val": VAL, "test": TEST}
_MULTI_KEYS = {"separator", "max_len"}
_DATE_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
"""ISO date-times understood by the time column (a ``T`` between date and time is allowed)."""


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _role(path: Path) -> str:
    return path.name.split(".")[0].lower()


def parse_times(raw: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A time column -> (float64 times ``[N]``, bool invalid ``[N]``).

    Numbers are kept as written (epoch seconds, ``YYYYMMDDHH``, ...); strings that are not
    numbers are read as ISO date-times (``2024-05-01 13:00:00``, ``2024-05-01T13:00``,
    ``2024-05-01``; no time zone: read as UTC) and become epoch seconds; missing or unreadable is
    invalid.
    """
    if raw.dtype.is_numeric():
        t = raw.cast(pl.Float64)
    else:
        text = raw.cast(pl.String).str.strip_chars().str.replace("T", " ", literal=True)
        number = text.cast(pl.Float64, strict=False)
        parsed = [text.str.to_datetime(f, strict=False, time_unit="us") for f in _DATE_TIME_FORMATS]
        when = pl.select(pl.coalesce(parsed)).to_series()
        t = number.fill_null(when.dt.epoch("us").cast(pl.Float64) / 1e6)
    values = t.to_numpy().astype(np.float64)
    return values, ~np.isfinite(values)


@dataclass(kw_only=True, eq=False)
class TabularFileDataModule(TabularDataModule):
    """The user's own tabular data (see the module docstring for files and column kinds).

    Args (beyond :class:`~recsys_lab.data.cached.CachedDataModule`'s):
        labels: label name -> column, the primary (``click``) first.
        categorical: categorical columns.
        numeric_columns: numeric columns (transformed by ``numeric``).
        numeric: numeric transform (``log_squared``, ``log1p``, ``log_standardize``, ``quantile``).
        num_quantiles: buckets of ``numeric=quantile``.
        multi_valued: multi-valued column -> ``{separator: "|", max_len: 16}`` (either key optional).
        history: behaviour-history columns (events per row as separated lists).
        history_separator: what separates a history list's events.
        history_timestamps: a list column of the history events' times (numbers), or None.
        history_order: ``oldest_first`` or ``newest_first``, how the lists are written.
        max_history: most recent history events kept per sample (None = all).
        user: the GAUC group column (a categorical column), or None.
        item: the item column (a categorical column; role ``item``), or None.
        time: the time column for ``split=time``, or None.
        split_time_boundaries: ``split=time``: first validation time and first test time (as the
            column is parsed: numbers as written, date-times as epoch seconds); None cuts at the
            ``split_fractions`` quantiles of the time column.
        separator: field separator of text files; None: by extension (``.tsv``/``.tab`` tab,
            otherwise comma, or tab when the header has one).
        hash_buckets: hash categorical values (not ``user``) into this many buckets per field.
    """

    name = "tabular"
    source_url = "your own files (data.path); see docs/data.md, 'Your own data'"

    labels: Mapping[str, str] | None = None
    categorical: Sequence[str] = ()
    numeric_columns: Sequence[str] = ()
    numeric: str = "log_standardize"
    multi_valued: Mapping[str, Mapping[str, Any] | None] | None = None
    history: Sequence[str] = ()
    history_separator: str = "|"
    history_timestamps: str | None = None
    history_order: Literal["oldest_first", "newest_first"] = "oldest_first"
    max_history: int | None = 50
    user: str | None = None
    item: str | None = None
    time: str | None = None
    split_time_boundaries: Sequence[float] | None = None
    separator: str | None = None
    batch_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        labels, multi_valued, history = self.labels, self.multi_valued, self.history
        history_order, max_history = self.history_order, self.max_history
        history_timestamps, split_time_boundaries = self.history_timestamps, self.split_time_boundaries
        user, item, time, split = self.user, self.item, self.time, self.split
        where = "tabular data"
        self.labels = {str(k): str(v) for k, v in (labels or {"click": "click"}).items()}
        if not self.labels or next(iter(self.labels)) != "click":
            raise ValueError(
                f"{where}: labels={self.labels} must start with the primary label named click, e.g. "
                "data.labels={click: <your click column>, conversion: <column>}"
            )
        self.categorical = tuple(str(c) for c in self.categorical)
        self.numeric_columns = tuple(str(c) for c in self.numeric_columns)
        self.multi_valued = self._multi_columns(multi_valued or {})
        self.history = tuple(str(c) for c in history)
        if history_order not in ("oldest_first", "newest_first"):
            raise ValueError(f"{where}: history_order={history_order!r} must be oldest_first or newest_first")
        if max_history is not None and max_history < 0:
            raise ValueError(f"{where}: max_history={max_history!r} must be >= 0 or null")
        if history_timestamps and not self.history:
            raise ValueError(f"{where}: history_timestamps={history_timestamps!r} needs data.history columns")
        features = [*self.categorical, *self.numeric_columns, *(c.name for c in self.multi_valued)]
        declared = [*features, *self.history, *self.labels.values()]
        dupes = sorted({c for c in declared if declared.count(c) > 1})
        if dupes:
            raise ValueError(
                f"{where}: columns {dupes} are declared more than once (labels, categorical, numeric_columns, "
                "multi_valued, history); give each column one kind"
            )
        if not features:
            raise ValueError(
                f"{where}: no features declared: list your columns in data.categorical, "
                "data.numeric_columns or data.multi_valued"
            )
        for key, col in (("user", user), ("item", item)):
            if col is not None and col not in self.categorical:
                raise ValueError(
                    f"{where}: {key}={col!r} must be one of data.categorical {list(self.categorical)}"
                )
        if split == "time" and time is None:
            raise ValueError(f"{where}: split=time needs the time column: data.time=<column>")
        if split_time_boundaries is not None:
            b = tuple(float(x) for x in split_time_boundaries)
            if len(b) != 2 or b[0] > b[1]:
                raise ValueError(
                    f"{where}: split_time_boundaries={list(split_time_boundaries)} must be "
                    "[first validation time, first test time]"
                )
            split_time_boundaries = (b[0], b[1])
        self.split_time_boundaries = split_time_boundaries
        self._boundaries: tuple[float, float] | None = None

    @staticmethod
    def _multi_columns(spec: Mapping[str, Mapping[str, Any] | None]) -> tuple[ListColumn, ...]:
        out = []
        for name, opts in spec.items():
            opts = dict(opts or {})
            unknown = sorted(set(opts) - _MULTI_KEYS)
            if unknown:
                raise ValueError(
                    f"tabular data: multi_valued.{name} has unknown keys {unknown}; use {sorted(_MULTI_KEYS)}"
                )
            max_len = int(opts.get("max_len", 16))
            if max_len < 1:
                raise ValueError(f"tabular data: multi_valued.{name}.max_len={max_len} must be >= 1")
            out.append(ListColumn(str(name), str(opts.get("separator", "|")), max_len))
        return tuple(out)

    @classmethod
    def split_kinds(cls) -> tuple[str, ...]:
        return ("random", "time", "files")

    def history_limit(self) -> int | None:
        return self.max_history if self.history else None

    # -- files ---------------------------------------------------------------------------------
    def _expected(self) -> str:
        return (
            "a CSV/TSV/parquet file, a folder of them, or a folder with train.*, valid.* and test.* "
            "(data.split=files)"
        )

    def input_files(self) -> list[Path]:
        path = require_path(self, self._expected())
        if path.is_file():
            files = [path]
        else:
            files = sorted(f for f in path.iterdir() if f.is_file() and _DATA_FILE.search(f.name))
            if not files:
                raise self.not_found(self._expected() + f"; {path} holds no .csv/.tsv/.parquet file")
            split_files = [f for f in files if _role(f) in _FILE_SPLITS]
            if self.split == "files":
                by_role = {_FILE_SPLITS[_role(f)]: f for f in split_files}
                if sorted(by_role) != [TRAIN, VAL, TEST] or len(split_files) != 3:
                    raise DataError(
                        f"tabular data: split=files needs exactly one train.*, one valid.* (or val.*) and one test.* "
                        f"file in data.path={path}; it holds {[f.name for f in files]}"
                    )
                files = [by_role[TRAIN], by_role[VAL], by_role[TEST]]
        if self.split == "files" and path.is_file():
            raise DataError(
                f"tabular data: split=files needs a folder with train.*, valid.* and test.* files; "
                f"data.path={path} is one file. Use data.split=random or time."
            )
        return files

    def _needed(self) -> list[str]:
        cols = [*self.labels.values(), *self.categorical, *self.numeric_columns]
        cols += [c.name for c in self.multi_valued] + list(self.history)
        cols += [c for c in (self.history_timestamps, self.time) if c and c not in cols]
        return cols

    def _layout(
        self, path: Path, header: list[str], separator: str, text: bool, optional_labels: bool = False
    ) -> TextLayout:
        labels = list(self.labels.values())
        if optional_labels and not any(c in header for c in labels):
            labels = []  # a file to score without its labels
        needed = [c for c in self._needed() if c in labels or c not in self.labels.values()]
        missing = [c for c in needed if c not in header]
        if missing:
            raise DataError(
                f"{path}: the columns {missing} declared in the data config are not in the file, whose "
                f"columns are {header[:30]}{' ...' if len(header) > 30 else ''}. Fix data.labels / "
                "data.categorical / ... or the file's header."
            )
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}: the header names {dupes} more than once.")
        return TextLayout(
            name=f"tabular {'text (separator ' + repr(separator) + ', with a header)' if text else 'parquet'}",
            separator=separator,
            columns=tuple(header),
            read=tuple(needed),
            numeric=frozenset(self.numeric_columns),
            label=labels[0] if labels else None,
            header=text,
            extra_labels=frozenset(labels[1:]),
        )

    def sources(self, files: list[Path], optional_labels: bool = False) -> list[Source]:
        out = []
        for f in files:
            if _is_parquet(f):
                out.append(
                    Source(f, self._layout(f, parquet_columns(f), ",", False, optional_labels), "parquet")
                )
                continue
            line = first_line(f)
            if not line.strip():
                raise DataError(
                    f"{f} is empty (or starts with an empty line); expected a header naming the columns."
                )
            sep = self.separator
            if sep is None:
                name = f.name.lower().removesuffix(".gz")
                sep = "\t" if name.endswith((".tsv", ".tab")) or "\t" in line else ","
            header = [h.strip().strip('"') for h in line.split(sep)]
            out.append(Source(f, self._layout(f, header, sep, True, optional_labels)))
        return out

    def serving_source(self, path: Path) -> Source:
        """A file to score: read as in training; one with none of the label columns gives unlabelled rows."""
        return self.sources([path], optional_labels=True)[0]

    # -- splits --------------------------------------------------------------------------------
    def fixed_splits(self, sources: list[Source]) -> list[int]:
        return [_FILE_SPLITS[_role(s.path)] for s in sources]

    def time_rules(self, sources: list[Source]) -> list[SplitRule]:
        b = self.split_time_boundaries or self._time_boundaries(sources)
        return [SplitRule("time", column=TIME_COLUMN, boundaries=b) for _ in sources]

    def _time_boundaries(self, sources: list[Source]) -> tuple[float, float]:
        """The times at the ``split_fractions`` quantiles of the time column (one extra read of it)."""
        if self._boundaries is not None:
            return self._boundaries
        assert self.time is not None
        report = BadRowReport(self.name, max_examples=0)  # bad rows are counted by the real pass
        times = []
        for src in sources:
            layout = TextLayout(
                name=src.layout.name,
                separator=src.layout.separator,
                columns=src.layout.columns,
                read=(self.time,),
                header=src.layout.header,
            )
            if src.format == "parquet":
                frames = (
                    df
                    for df, _ in iter_parquet_frames(
                        src.path, layout, report, {}, max_rows=self.max_rows_per_file
                    )
                )
            else:
                skip = 1 if layout.header else 0
                blocks = iter_blocks(src.path, skip, 32 << 20, self.max_rows_per_file)
                frames = (parse_block(b, layout, report, str(src.path)) for b in blocks)
            for df in frames:
                t, bad = parse_times(df.get_column(self.time))
                times.append(t[~bad])
        t = np.concatenate(times) if times else np.zeros(0)
        if len(t) == 0:
            raise DataError(f"tabular data: the time column {self.time!r} holds no readable time")
        f = self.split_fractions
        q = np.quantile(t, [f[0], f[0] + f[1]], method="higher")
        self._boundaries = (float(q[0]), float(q[1]))
        return self._boundaries

    # -- features ------------------------------------------------------------------------------
    def spec(self) -> TabularSpec:
        roles: dict[str, FeatureRole] = {}
        if self.user:
            roles[self.user] = FeatureRole.USER
        if self.item:
            roles[self.item] = FeatureRole.ITEM
        history = None
        if self.history:
            columns = []
            for h in self.history:
                base = h.removeprefix(HISTORY_PREFIX)
                shared = base if base != h and base in self.categorical else None
                columns.append(ListColumn(h, self.history_separator, 1 << 30, shared))
                if shared and shared in roles:
                    roles[h] = roles[shared]
            ts = (
                ListColumn(self.history_timestamps, self.history_separator)
                if self.history_timestamps
                else None
            )
            history = HistorySpec(tuple(columns), ts, self.history_order)
        labels = list(self.labels.items())
        return TabularSpec(
            dataset=self.name,
            label=labels[0][1],
            categorical=self.categorical,
            numeric=self.numeric_columns,
            feature_order=(*self.categorical, *self.numeric_columns, *(c.name for c in self.multi_valued)),
            roles=roles,
            user=self.user,
            derive=self._derive if (self.time or self.history) else None,
            extra_labels=dict(labels[1:]),
            multi_valued=self.multi_valued,
            history=history,
        )

    def _derive(self, df: pl.DataFrame) -> Derived:
        """Parse the time column into :data:`TIME_COLUMN`; flag unreadable times, history lists of
        unequal lengths and history timestamps that are not numbers."""
        checks: list[tuple[np.ndarray, str, str]] = []
        frame = df
        if self.time is not None:
            t, bad = parse_times(df.get_column(self.time))
            frame = frame.with_columns(pl.Series(TIME_COLUMN, t))
            checks.append((bad, self.time, "not a number or an ISO date-time"))
        if self.history:
            columns = [*self.history, *([self.history_timestamps] if self.history_timestamps else [])]
            lengths = df.select(
                pl.col(c)
                .str.split(self.history_separator)
                .list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
                .list.len()
                .fill_null(0)
                .alias(c)
                for c in columns
            ).to_numpy()  # [N, columns]
            unequal = (lengths != lengths[:, :1]).any(axis=1)
            checks.append(
                (unequal, self.history[0], f"the history columns {columns} list different numbers of events")
            )
            if self.history_timestamps:
                ts = df.get_column(self.history_timestamps).str.split(self.history_separator)
                wrong = (
                    ts.list.eval(
                        pl.element()
                        .str.strip_chars()
                        .filter(pl.element().str.strip_chars() != "")
                        .cast(pl.Float64, strict=False)
                        .is_null()
                        .any()
                    )
                    .list.first()
                    .fill_null(False)
                    .to_numpy()
                    .astype(bool)
                )
                checks.append((wrong, self.history_timestamps, "a history timestamp is not a number"))
        first, *more = checks
        return Derived(frame, invalid=first[0], column=first[1], problem=first[2], more=tuple(more))

    # -- cache key -----------------------------------------------------------------------------
    def preprocess_config(self) -> dict[str, Any]:
        cfg = super().preprocess_config()
        cfg.update(
            {
                "labels": dict(self.labels),
                "multi_valued": {c.name: [c.separator, c.max_len] for c in self.multi_valued},
                "history": list(self.history),
                "history_separator": self.history_separator if self.history else None,
                "history_timestamps": self.history_timestamps,
                "history_order": self.history_order if self.history else None,
                "item": self.item,
                "time": self.time,
                "split_time_boundaries": list(self.split_time_boundaries)
                if self.split_time_boundaries
                else None,
                "separator": self.separator,
            }
        )
        return cfg
