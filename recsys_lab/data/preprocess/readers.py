"""Reading delimited text files (plain or gzip) in blocks of whole lines, with bad-row detection.

A file is read in blocks of about ``block_bytes`` bytes cut at line ends, so memory stays bounded
whatever the file size. Each block is parsed by polars' CSV reader (the fast path). When the
fast path cannot vouch for every line — a line with the wrong number of fields, a non-number in a
numeric column, invalid UTF-8 — the block is parsed again line by line (the careful path), which
finds the bad lines, reports them with their physical line numbers (see
:mod:`~recsys_lab.data.preprocess.badrows`) and keeps the rest. Clean blocks never pay for it.

Quotes are not special: the raw Criteo, Avazu and MovieLens files have none.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
LINE_COLUMN = "_line"
"""Column of :func:`parse_block`'s output holding each row's 1-based physical line number."""

_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", "|": "pipe", "::": "'::'"}


@dataclass(frozen=True)
class TextLayout:
    """How to read one kind of delimited text file.

    Attributes:
        name: a description for messages, e.g. ``"Criteo raw (tab-separated, no header)"``.
        separator: field separator (one or more characters).
        columns: every column of a line, in file order.
        read: the columns to return, in output order (a subset of ``columns``).
        numeric: columns returned as Float64; anything but a finite number makes a bad row.
        label: a column returned as Float64 that must be 0 or 1 (None: no label check).
        extra_labels: more columns checked like ``label`` (datasets with several labels).
        header: the file's first line names the columns (it is skipped).
        encoding: text encoding; the fast path needs UTF-8.
    """

    name: str
    separator: str
    columns: tuple[str, ...]
    read: tuple[str, ...]
    numeric: frozenset[str] = frozenset()
    label: str | None = None
    header: bool = False
    encoding: str = "utf-8"
    extra_labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        missing = [c for c in self.read if c not in self.columns]
        if missing:
            raise ValueError(f"TextLayout {self.name!r}: read columns {missing} are not among its columns")
        for label in self.labels:
            if label not in self.read:
                raise ValueError(f"TextLayout {self.name!r}: the label {label!r} must be read")

    @property
    def labels(self) -> tuple[str, ...]:
        """The label columns: ``label`` first, then ``extra_labels``."""
        return ((self.label,) if self.label else ()) + tuple(sorted(self.extra_labels))

    @property
    def typed(self) -> frozenset[str]:
        """Columns parsed as numbers (numeric columns and the labels)."""
        return self.numeric | frozenset(self.labels)

    def dtype(self, column: str) -> pl.DataType:
        return pl.Float64() if column in self.typed else pl.String()

    def describe_separator(self) -> str:
        return _SEPARATOR_NAMES.get(self.separator, repr(self.separator))


@dataclass(frozen=True)
class Block:
    """Whole lines of a file: ``data`` holds ``num_lines`` lines, the first one being line
    ``first_line`` (1-based, counting a header). Every line ends in ``\\n`` except perhaps the
    file's last. ``separators`` counts the occurrences of the separator byte asked for (if any)."""

    data: bytes
    first_line: int
    num_lines: int
    separators: int | None = None


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing gzip (detected by its magic bytes)."""
    try:
        f = open(path, "rb")
        magic = f.read(2)
        f.seek(0)
    except OSError as e:
        raise DataError(
            f"Cannot read {path}: {e.strerror or e}. Check that the file exists and is readable."
        ) from e
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _read_error(path: Path, line: int, e: Exception) -> DataError:
    return DataError(
        f"Cannot read {path} after line {line}: {e}. The file looks truncated or corrupt (an interrupted "
        "download or decompression?); download it again."
    )


def first_line(path: Path, encoding: str = "utf-8") -> str:
    """The first line of ``path`` (decompressed), without its line end or a UTF-8 byte-order mark;
    '' for an empty file."""
    with open_binary(path) as f:
        try:
            raw = f.readline(1 << 20)
        except (OSError, EOFError, zlib.error) as e:
            raise _read_error(path, 0, e) from e
    return raw.decode(encoding, errors="replace").rstrip("\r\n").removeprefix("\ufeff")  # no byte-order mark


def iter_blocks(
    path: Path,
    skip_lines: int = 0,
    block_bytes: int = 32 << 20,
    max_lines: int | None = None,
    count_separator: str | None = None,
) -> Iterator[Block]:
    """Blocks of whole lines of ``path`` after ``skip_lines`` lines, at most ``max_lines`` lines.

    With a one-character ``count_separator``, each block also counts its occurrences (done here
    so that, under :func:`prefetch`, the count runs in the reader thread).
    """
    sep = ord(count_separator) if count_separator is not None and len(count_separator) == 1 else None

    def block(data: bytes, first: int, n: int) -> Block:
        count = None if sep is None else int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == sep))
        return Block(data, first, n, count)

    line_no = 1
    emitted = 0
    with open_binary(path) as f:
        try:
            for _ in range(skip_lines):
                f.readline()
                line_no += 1
            carry = b""
            while max_lines is None or emitted < max_lines:
                chunk = f.read(block_bytes)
                data = carry + chunk if carry else chunk
                if not chunk:
                    if data:  # the last line has no line end
                        yield block(data, line_no, 1)
                    return
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading
                    carry = data
                    continue
                body, carry = data[:cut], data[cut:]
                n = body.count(b"\n")
                if max_lines is not None and emitted + n > max_lines:
                    n = max_lines - emitted
                    body = body[: _nth_newline(body, n) + 1]
                    carry = b""
                yield block(body, line_no, n)
                line_no += n
                emitted += n
        except (OSError, EOFError, zlib.error) as e:
            raise _read_error(path, line_no, e) from e


def count_lines(path: Path, skip_lines: int = 0, max_lines: int | None = None) -> int:
    """Number of lines after ``skip_lines`` (at most ``max_lines``), without parsing them."""
    return sum(b.num_lines for b in iter_blocks(path, skip_lines, 16 << 20, max_lines))


def _nth_newline(data: bytes, n: int) -> int:
    """Offset of the ``n``-th (1-based) ``\\n`` in ``data``."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return int(ends[n - 1])


def prefetch(items: Iterator[Block], depth: int = 2) -> Iterator[Block]:
    """Run ``items`` in a background thread, ``depth`` blocks ahead (reading and gunzip overlap
    parsing). Exceptions are re-raised in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:  # re-raised below
            q.put(e)

    thread = threading.Thread(target=produce, name="recsys-lab-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------


def parse_block(block: Block, layout: TextLayout, report: BadRowReport, file: str) -> pl.DataFrame:
    """Parse the good rows of ``block``: the columns ``layout.read`` plus :data:`LINE_COLUMN`.

    Bad rows are skipped and recorded in ``report`` (which also counts the rows read). Numeric
    columns and the label come back as Float64 (null = missing), the others as String (null =
    empty field).
    """
    report.add_rows(block.num_lines)
    df = _parse_fast(block, layout)
    if df is None:
        df = _parse_careful(block, layout, report, file)
    else:
        df = df.with_columns(
            pl.int_range(block.first_line, block.first_line + df.height, dtype=pl.Int64).alias(LINE_COLUMN)
        )
    return check_values(
        df, lambda lines: line_texts(block, lines - block.first_line, layout.encoding), layout, report, file
    )


def _parse_fast(block: Block, layout: TextLayout) -> pl.DataFrame | None:
    """polars' reader, when it provably keeps every line as one row with the right fields."""
    if len(layout.separator) != 1 or layout.encoding.replace("-", "").lower() != "utf8":
        return None
    k = len(layout.columns)
    # Each line has at most k - 1 separators (polars raises on more), so this total proves all have k - 1.
    separators = (
        block.separators if block.separators is not None else block.data.count(layout.separator.encode())
    )
    if separators != block.num_lines * (k - 1):
        return None
    index = {c: i for i, c in enumerate(layout.columns)}
    try:
        df = pl.read_csv(
            block.data,
            has_header=False,
            separator=layout.separator,
            quote_char=None,
            schema={c: layout.dtype(c) for c in layout.columns},
            columns=sorted(index[c] for c in layout.read),
            raise_if_empty=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.NoDataError):
        return None  # a non-number in a numeric column, invalid UTF-8, ...: find it line by line
    if df.height != block.num_lines:
        return None
    return df.select(layout.read)


def _parse_careful(block: Block, layout: TextLayout, report: BadRowReport, file: str) -> pl.DataFrame:
    """Line by line: split each line, count its fields, parse numbers; report the bad lines."""
    text = block.data.decode(layout.encoding, errors="replace")
    lines = text.split("\n")
    if len(lines) > block.num_lines:  # the text after the last line end is empty
        lines = lines[: block.num_lines]
    raw = pl.Series("line", lines, dtype=pl.String).str.strip_suffix("\r")
    line_no = np.arange(block.first_line, block.first_line + len(lines), dtype=np.int64)
    k = len(layout.columns)
    sep = layout.separator

    fields = (raw.str.count_matches(sep, literal=True) + 1).to_numpy()
    ok = fields == k
    if not ok.all():
        bad = np.flatnonzero(~ok)
        examples = [
            (
                file,
                int(line_no[i]),
                f"expected {k} {layout.describe_separator()}-separated fields, found {fields[i]}",
                lines[i],
            )
            for i in bad[: report.examples_wanted("field_count")]
        ]
        report.add("field_count", len(bad), examples)
    ok_idx = np.flatnonzero(ok)
    good = raw.filter(pl.Series(ok))
    kept_lines = line_no[ok]

    index = {c: i for i, c in enumerate(layout.columns)}
    parts = good.str.split_exact(sep, k - 1).struct.unnest() if k > 1 else good.to_frame("field_0")
    df = pl.DataFrame({c: parts.get_column(f"field_{index[c]}").replace("", None) for c in layout.read})
    # Numbers: anything non-empty that does not parse is a bad row.
    bad_any = np.zeros(df.height, dtype=bool)
    casts = {}
    for c in layout.read:
        if c not in layout.typed:
            continue
        src = df.get_column(c)
        parsed = src.str.strip_chars(" ").cast(pl.Float64, strict=False)
        wrong = (src.is_not_null() & parsed.is_null()).to_numpy()
        if wrong.any():
            new = wrong & ~bad_any
            idx = np.flatnonzero(new)
            reason = "bad_label" if c in layout.labels else "non_numeric"
            examples = [
                (file, int(kept_lines[i]), f"column {c} is {src[int(i)]!r}, not a number", lines[ok_idx[i]])
                for i in idx[: report.examples_wanted(reason)]
            ]
            report.add(reason, len(idx), examples)
            bad_any |= wrong
        casts[c] = parsed
    df = df.with_columns(*(s.alias(c) for c, s in casts.items()), pl.Series(LINE_COLUMN, kept_lines))
    return df.filter(pl.Series(~bad_any)) if bad_any.any() else df


def check_values(
    df: pl.DataFrame,
    texts: Callable[[np.ndarray], list[str]],
    layout: TextLayout,
    report: BadRowReport,
    file: str,
) -> pl.DataFrame:
    """Drop rows whose labels are not 0/1 or whose numbers are not finite (NaN, inf).

    ``texts(lines)`` gives the content of the rows at physical lines ``lines`` (for the report)."""
    checks: list[tuple[str, str, np.ndarray]] = []
    for label in layout.labels:
        y = df.get_column(label).to_numpy()  # float64, NaN = missing
        wrong = ~((y == 0) | (y == 1))
        if wrong.any():
            checks.append(("bad_label", label, wrong))
    for c in (c for c in layout.read if c in layout.numeric):
        col = df.get_column(c)
        x = col.to_numpy()  # float64; nulls become NaN
        if np.count_nonzero(np.isnan(x)) == col.null_count() and not np.isinf(x).any():
            continue  # the common case, checked without building masks
        wrong = (col.is_nan() | col.is_infinite()).fill_null(False).to_numpy()
        checks.append(("non_numeric", c, wrong))
    if not checks:
        return df
    bad_any = np.zeros(df.height, dtype=bool)
    lines = df.get_column(LINE_COLUMN).to_numpy()
    for reason, column, wrong in checks:
        idx = np.flatnonzero(wrong & ~bad_any)
        bad_any |= wrong
        want = idx[: report.examples_wanted(reason)]
        values = df.get_column(column)
        what = "not 0 or 1" if reason == "bad_label" else "not a finite number"
        examples = [
            (file, int(lines[i]), f"column {column} is {values[int(i)]!r}, {what}", t)
            for i, t in zip(want, texts(lines[want]))
        ]
        report.add(reason, len(idx), examples)
    return df.filter(pl.Series(~bad_any))


def line_texts(block: Block, offsets: np.ndarray, encoding: str = "utf-8") -> list[str]:
    """The text of lines ``offsets`` (0-based within ``block``), without line ends."""
    if len(offsets) == 0:
        return []
    ends = np.flatnonzero(np.frombuffer(block.data, dtype=np.uint8) == 10)
    out = []
    for i in offsets:
        start = 0 if i == 0 else int(ends[i - 1]) + 1
        end = int(ends[i]) if i < len(ends) else len(block.data)
        out.append(block.data[start:end].decode(encoding, errors="replace").rstrip("\r"))
    return out


# ------------------------------------------------------------------------------------------------
# Parquet
# ------------------------------------------------------------------------------------------------


def parquet_columns(path: Path) -> list[str]:
    """The column names of a parquet file."""
    try:
        return list(pl.read_parquet_schema(path))
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(
            f"Cannot read {path} as parquet: {e}. Check the file (complete? really parquet?)."
        ) from e


def iter_parquet_frames(
    path: Path,
    layout: TextLayout,
    report: BadRowReport,
    separators: Mapping[str, str],
    rows: int = 1 << 18,
    max_rows: int | None = None,
) -> Iterator[tuple[pl.DataFrame, Callable[[np.ndarray], list[str]]]]:
    """A parquet file in slices of ``rows`` rows, parsed like :func:`parse_block` parses text.

    Yields the good rows (the columns ``layout.read`` plus :data:`LINE_COLUMN`, the 1-based row
    number) with a function giving the content of rows by number, for bad-row reports. Numeric
    columns and labels are cast to Float64 (a value that does not convert is a ``non_numeric`` or
    ``bad_label`` row), list columns are joined with ``separators[column]`` (default ``|``) and everything else is cast to
    String, so the rest of the pipeline sees the same frame as from a delimited text file.
    """
    try:
        total = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(
            f"Cannot read {path} as parquet: {e}. Check the file (complete? really parquet?)."
        ) from e
    if max_rows is not None:
        total = min(total, max_rows)
    for start in range(0, total, rows):
        n = min(rows, total - start)
        raw = pl.scan_parquet(path).slice(start, n).select(list(layout.read)).collect()
        report.add_rows(raw.height)
        line = pl.int_range(start + 1, start + 1 + raw.height, dtype=pl.Int64, eager=True)

        def texts(lines: np.ndarray, raw: pl.DataFrame = raw, start: int = start) -> list[str]:
            return [str(raw.row(int(i) - 1 - start, named=True)) for i in lines]

        cols: dict[str, pl.Series] = {}
        bad_any = np.zeros(raw.height, dtype=bool)
        for c in layout.read:
            src = raw.get_column(c)
            if isinstance(src.dtype, pl.List):
                src = src.cast(pl.List(pl.String)).list.join(separators.get(c, "|"))
            if c not in layout.typed:
                cols[c] = (
                    src.cast(pl.String).replace("", None) if src.dtype != pl.String else src.replace("", None)
                )
                continue
            text = src.cast(pl.String) if src.dtype == pl.String else None
            parsed = (text.str.strip_chars(" ") if text is not None else src).cast(pl.Float64, strict=False)
            wrong = (src.is_not_null() & parsed.is_null()).to_numpy() & ~bad_any
            if wrong.any():
                reason = "bad_label" if c in layout.labels else "non_numeric"
                idx = np.flatnonzero(wrong)
                report.add(
                    reason,
                    len(idx),
                    [
                        (str(path), start + 1 + int(i), f"column {c} is {src[int(i)]!r}, not a number", t)
                        for i, t in zip(idx, texts(start + 1 + idx[: report.examples_wanted(reason)]))
                    ],
                )
                bad_any |= wrong
            cols[c] = parsed
        df = pl.DataFrame({**cols, LINE_COLUMN: line})
        if bad_any.any():
            df = df.filter(pl.Series(~bad_any))
        yield check_values(df, texts, layout, report, str(path)), texts
