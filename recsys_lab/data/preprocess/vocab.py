"""Vocabularies of categorical fields: counted while streaming, fitted with a min-count threshold.

Ids are field-local: ``0`` = out of vocabulary (a value rarer than the field's min count in the
training split, or never seen there), ``1`` = missing (an empty field), ``2..`` = the kept
values, most frequent first (ties broken by value, so a fit is deterministic).

While streaming, each value is stored as an integer *key* (:data:`MISSING_KEY` for a missing
value) and counted on training rows; :meth:`KeyCounter.fit` then turns keys into final ids with
one table lookup (:meth:`FittedVocab.encode`). String fields get their keys from a polars
``Categories`` (a concurrent string interner); integer fields (derived or bucketed numbers) use
the value itself as key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import polars as pl

OOV_ID = 0
MISSING_ID = 1
FIRST_ID = 2
MISSING_KEY = int(np.iinfo(np.int32).min)
"""The staged key of a missing value."""
INT_KEY_LIMIT = 1 << 30
"""Integer keys are clipped to [-INT_KEY_LIMIT, INT_KEY_LIMIT]."""
_MAX_INT_RANGE = 1 << 26


@dataclass
class FittedVocab:
    """The fitted vocabulary of one field.

    Attributes:
        name: the field.
        values: kept values (as strings), id ``FIRST_ID + i`` for ``values[i]``.
        counts: int64 training counts of ``values``.
        key_offset: the smallest key; ``table[key - key_offset + 2]`` is a key's id.
        table: int32 ids; ``table[0]`` = MISSING_ID, ``table[1]`` and ``table[-1]`` = OOV_ID (for keys
            below and above the counted range).
    """

    name: str
    values: list[str]
    counts: np.ndarray
    key_offset: int
    table: np.ndarray

    @property
    def size(self) -> int:
        """Vocabulary size including the reserved ids 0 (OOV) and 1 (missing)."""
        return FIRST_ID + len(self.values)

    def encode(self, keys: np.ndarray) -> np.ndarray:
        """int32 keys ``[N]`` (MISSING_KEY = missing) -> int32 ids ``[N]``."""
        idx = keys.astype(np.int64)
        idx -= self.key_offset - 2
        np.clip(idx, 1, len(self.table) - 1, out=idx)  # keys out of the counted range -> an OOV slot
        idx[keys == MISSING_KEY] = 0
        return self.table[idx]

    def frame(self) -> pl.DataFrame:
        """``field, id, value, count`` for the kept values (ids 0 and 1 are implicit)."""
        n = len(self.values)
        return pl.DataFrame(
            {
                "field": [self.name] * n,
                "id": np.arange(FIRST_ID, FIRST_ID + n, dtype=np.int32),
                "value": pl.Series(self.values, dtype=pl.String),
                "count": self.counts.astype(np.int64),
            }
        )


class KeyCounter(ABC):
    """Counts one field's values by key on training rows.

    Args:
        name: the field.
        count_all: also count rows of every split (for :meth:`group_ids`, e.g. GAUC user ids).
    """

    def __init__(self, name: str, count_all: bool = False) -> None:
        self.name = name
        self.count_all = count_all
        self.counts = np.zeros(0, dtype=np.int64)  # per key - offset
        self.counts_all = np.zeros(0, dtype=np.int64)

    @abstractmethod
    def key_expr(self, column: pl.Expr) -> pl.Expr:
        """Polars expression: the column's values -> Int32 keys (MISSING_KEY for null)."""

    @abstractmethod
    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Count-array positions of int32 ``keys`` (missing ones dropped), growing the range as needed."""

    @abstractmethod
    def _key_values(self, positions: np.ndarray) -> pl.Series:
        """The values at count positions ``positions`` (strings or integers; they order ties)."""

    @abstractmethod
    def _key_offset(self) -> int: ...

    def update(self, keys: np.ndarray, num_train: int | None = None) -> None:
        """Observe int32 ``keys`` ``[N]`` (MISSING_KEY = missing) and count the first ``num_train``
        of them (the training rows; None = all)."""
        n = len(keys) if num_train is None else num_train
        if self.count_all:
            pos = self._positions(keys)
            self.counts_all = _add_counts(self.counts_all, pos)
            train = self._positions(keys[:n]) if n < len(keys) else pos
        else:
            if n < len(keys):
                self._positions(keys[n:])  # the range covers every split's keys
            train = self._positions(keys[:n])
        self.counts = _add_counts(self.counts, train)

    def fit(self, min_count: int) -> FittedVocab:
        """Keep values counted at least ``min_count`` times (and at least once) in training rows."""
        return self._fit(self.counts, max(int(min_count), 1))

    def group_ids(self) -> FittedVocab:
        """Ids of every value seen in any split (no threshold): deterministic group ids for GAUC."""
        if not self.count_all:
            raise RuntimeError(f"KeyCounter({self.name!r}) was built without count_all=True")
        return self._fit(self.counts_all, 1)

    def _fit(self, counts: np.ndarray, threshold: int) -> FittedVocab:
        kept = np.flatnonzero(counts >= threshold)
        values = self._key_values(kept)
        order = _frequency_order(counts[kept], values)
        kept = kept[order]
        table = np.full(len(counts) + 3, OOV_ID, dtype=np.int32)
        table[0] = MISSING_ID
        table[kept + 2] = np.arange(FIRST_ID, FIRST_ID + len(kept), dtype=np.int32)
        strings = values.gather(pl.Series(order)).cast(pl.String).to_list() if len(kept) else []
        return FittedVocab(self.name, strings, counts[kept].copy(), self._key_offset(), table)


class StringCounter(KeyCounter):
    """Keys of string values: physical ids of a private polars ``Categories`` (order of first sight)."""

    def __init__(self, name: str, count_all: bool = False) -> None:
        super().__init__(name, count_all)
        self.categories = pl.Categories.random()
        # The categories' string mapping lives only while some Series of that dtype exists.
        self._anchor = pl.Series(self.name, [], dtype=pl.Categorical(self.categories))
        self._num_keys = 0

    def key_expr(self, column: pl.Expr) -> pl.Expr:
        return (
            column.cast(pl.Categorical(self.categories)).to_physical().cast(pl.Int32).fill_null(MISSING_KEY)
        )

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        return keys[keys >= 0]  # physical ids; MISSING_KEY is negative

    def _key_values(self, positions: np.ndarray) -> pl.Series:
        physical = pl.Series(self.name, positions, dtype=pl.UInt32)
        return physical.cat.to(pl.Categorical(self.categories)).cast(pl.String)

    def _key_offset(self) -> int:
        return 0


class IntCounter(KeyCounter):
    """Keys of integer values: the value itself (clipped to +-INT_KEY_LIMIT), counted over its range."""

    def __init__(self, name: str, count_all: bool = False) -> None:
        super().__init__(name, count_all)
        self.low: int | None = None

    def key_expr(self, column: pl.Expr) -> pl.Expr:
        return column.clip(-INT_KEY_LIMIT, INT_KEY_LIMIT).cast(pl.Int32).fill_null(MISSING_KEY)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        keys = keys[keys != MISSING_KEY]
        if len(keys) == 0:
            return np.zeros(0, dtype=np.int64)
        lo, hi = int(keys.min()), int(keys.max())
        if self.low is None:
            self.low = lo
        if lo < self.low:  # shift the count arrays up
            shift = self.low - lo
            self.counts = np.concatenate([np.zeros(shift, dtype=np.int64), self.counts])
            self.counts_all = (
                np.concatenate([np.zeros(shift, dtype=np.int64), self.counts_all])
                if self.count_all
                else self.counts_all
            )
            self.low = lo
        if hi - self.low >= _MAX_INT_RANGE:
            raise ValueError(
                f"field {self.name!r}: integer values span {self.low}..{hi}, too wide a range to count densely; "
                "read the field as a string category instead"
            )
        return keys.astype(np.int64) - self.low

    def _key_values(self, positions: np.ndarray) -> pl.Series:
        return pl.Series(positions.astype(np.int64) + (self.low or 0), dtype=pl.Int64)

    def _key_offset(self) -> int:
        return self.low or 0


def _add_counts(counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``counts`` plus one count per entry of ``positions`` (growing the array as needed)."""
    if len(positions) == 0:
        return counts
    add = np.bincount(positions, minlength=len(counts))
    if len(add) > len(counts):
        add[: len(counts)] += counts
        return add
    counts += add
    return counts


def _frequency_order(counts: np.ndarray, values: pl.Series) -> np.ndarray:
    """Order of entries by count (descending), then value (ascending)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    frame = pl.DataFrame({"count": counts, "value": values}).with_row_index("i")
    return (
        frame.sort(["count", "value"], descending=[True, False]).get_column("i").to_numpy().astype(np.int64)
    )


def fit_frequency_vocab(values: pl.Series, min_count: int) -> pl.DataFrame:
    """In-memory fit: ``value, count, id`` of the values counted at least ``min_count`` times.

    Same id rules as :class:`KeyCounter` (ids from ``FIRST_ID``, by count then value).
    """
    counts = values.drop_nulls().cast(pl.String).value_counts(name="count")
    counts = counts.rename({counts.columns[0]: "value"})
    kept = counts.filter(pl.col("count") >= max(int(min_count), 1)).sort(
        ["count", "value"], descending=[True, False]
    )
    return kept.with_columns(pl.int_range(FIRST_ID, FIRST_ID + kept.height, dtype=pl.Int32).alias("id"))


def encode_with_vocab(values: pl.Series, vocab: pl.DataFrame) -> np.ndarray:
    """int32 ids of ``values`` under a :func:`fit_frequency_vocab` table (null -> 1, unseen -> 0)."""
    s = values.cast(pl.String)
    ids = s.replace_strict(
        vocab.get_column("value"), vocab.get_column("id"), default=OOV_ID, return_dtype=pl.Int32
    )
    return (
        pl.select(pl.when(s.is_null()).then(MISSING_ID).otherwise(ids))
        .to_series()
        .to_numpy()
        .astype(np.int32)
    )
