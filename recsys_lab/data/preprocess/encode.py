"""A trained run's preprocessing applied to new rows: raw text -> model inputs, block by block.

Training fits vocabularies and numeric transforms once (:mod:`.tabular`) and keeps them in the
cache (``schema.json``, ``vocab.parquet``, ``transforms.json``, the config in ``manifest.json``).
Scoring a checkpoint on other files — the next day's log, rows to predict — must turn raw values
into the same ids: :class:`TabularEncoder` reads those files and encodes parsed rows, and
:func:`encode_blocks` streams a file through the same reader, bad-row checks and ``derive`` hook
as training, one block at a time (memory: a block, whatever the file size).

As in training, an empty field is id 1 (missing) and a value the training split did not keep
(rarer than its min count, or never seen) is id 0 (OOV). ``Batch.user`` (GAUC groups) is a hash
of the raw user value: grouping needs equal values only, and new users get groups too.
Multi-valued and history columns of ``data=tabular`` become ``Batch.multi`` and ``Batch.history``
exactly as the cache holds them.

MovieLens ratings are encoded by :class:`MovieLensEncoder`: training's checks and side files, and
each row's history from the training data (its user's ratings strictly before the row's time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.cached import EVENTS
from recsys_lab.data.movielens import (
    _RECBOLE_NAMES,
    VARIANTS,
    MovieLensDataModule,
    check_ratings,
    recbole_variant,
    side_features,
)
from recsys_lab.data.movielens import CATEGORICAL as ML_CATEGORICAL
from recsys_lab.data.preprocess import numeric as num
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.cache import MANIFEST, SCHEMA, load_array
from recsys_lab.data.preprocess.errors import CacheMismatchError, DataError
from recsys_lab.data.preprocess.readers import (
    LINE_COLUMN,
    Block,
    TextLayout,
    first_line,
    iter_blocks,
    iter_parquet_frames,
    line_texts,
    parse_block,
    prefetch,
)
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.data.preprocess.tabular import (
    ListColumn,
    Source,
    SplitRule,
    TabularSpec,
    assign_splits,
    derive_block,
    hashed_expr,
    pad_lists,
)
from recsys_lab.data.preprocess.vocab import INT_KEY_LIMIT, MISSING_KEY, encode_with_vocab
from recsys_lab.data.schema import FeatureKind, Schema

log = logging.getLogger(__name__)

_USER_HASH_SEED = 0x5E7


@dataclass
class EncodedHistory:
    """Behaviour histories of N rows, packed as :class:`~recsys_lab.data.batch.Jagged` wants.

    Attributes:
        values: int64 ``[T, E]`` event ids (E event columns). actions: int64 ``[T]`` bitmasks.
        timestamps: int64 ``[T]``. offsets: int64 ``[N + 1]``: row r owns events
            ``offsets[r]:offsets[r + 1]``, oldest first.
    """

    values: np.ndarray
    actions: np.ndarray
    timestamps: np.ndarray
    offsets: np.ndarray

    def jagged(self, lo: int, hi: int) -> Jagged:
        """The histories of rows ``lo:hi``."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        return Jagged(
            values=torch.from_numpy(np.ascontiguousarray(self.values[a:b], dtype=np.int64)),
            actions=torch.from_numpy(np.ascontiguousarray(self.actions[a:b], dtype=np.int64)),
            timestamps=torch.from_numpy(np.ascontiguousarray(self.timestamps[a:b], dtype=np.int64)),
            offsets=torch.from_numpy(self.offsets[lo : hi + 1] - a),
        )


def keep_latest(lengths: np.ndarray, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's last ``max_len`` events of flat per-row lists (``lengths`` int64 ``[N]``):
    ``(index of the kept flat events [T'], offsets [N + 1])``; None keeps all."""
    kept = lengths if max_len is None else np.minimum(lengths, max_len)
    ends = np.cumsum(lengths)  # [N] end of each row's events in the flat lists
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(kept, out=offsets[1:])
    seg = np.repeat(np.arange(len(lengths)), kept)  # [T'] row of each kept event
    index = ends[seg] - kept[seg] + (np.arange(offsets[-1]) - offsets[:-1][seg])
    return index.astype(np.int64), offsets


@dataclass
class EncodedRows:
    """Encoded rows, ready to cut into batches.

    Attributes:
        dense: float32 ``[N, D]``. sparse: int64 ``[N, F]`` (schema order).
        labels: float32 ``[N]`` clicks, or None when the input has no label column.
        user: int64 ``[N]`` GAUC groups, or None when the dataset has no user field.
        multi: int64 ``[N, M, L]`` ids of the multi-valued fields (-1 = padding), or None.
        history: the rows' behaviour histories, or None when the dataset has none.
        extra_labels: float32 ``[N]`` per further label (multi-task data), when labelled.
    """

    dense: np.ndarray
    sparse: np.ndarray
    labels: np.ndarray | None
    user: np.ndarray | None
    multi: np.ndarray | None = None
    history: EncodedHistory | None = None
    extra_labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.sparse.shape[0]

    def batch(self, lo: int = 0, hi: int | None = None) -> Batch:
        """Rows ``lo:hi`` as a :class:`Batch` (labels are 0 when the input has none)."""
        hi = len(self) if hi is None else hi
        labels = np.zeros(hi - lo, np.float32) if self.labels is None else self.labels[lo:hi]
        extra = {name: y[lo:hi] for name, y in self.extra_labels.items()}
        return Batch(
            dense=torch.from_numpy(np.ascontiguousarray(self.dense[lo:hi])),
            sparse=torch.from_numpy(np.ascontiguousarray(self.sparse[lo:hi])),
            labels={
                name: torch.from_numpy(np.ascontiguousarray(y))
                for name, y in {"click": labels, **extra}.items()
            },
            user=None if self.user is None else torch.from_numpy(self.user[lo:hi].copy()),
            history=None if self.history is None else self.history.jagged(lo, hi),
            multi=None if self.multi is None else torch.from_numpy(np.ascontiguousarray(self.multi[lo:hi])),
        )


@dataclass
class EncodedBlock:
    """The encoded good rows of one block of ``num_lines`` lines starting at physical line
    ``first_line`` (1-based, a header counts).

    Attributes:
        lines: int64 ``[N]`` physical line of each good row, increasing.
        rows: the encoded good rows.
        ids: the input's row ids (e.g. Avazu's ``id`` column) of the good rows, or None.
        errors: physical line -> why it was skipped, for every bad line of the block (with
            :class:`RowErrors` as the report; empty otherwise).
    """

    first_line: int
    num_lines: int
    lines: np.ndarray
    rows: EncodedRows
    ids: list[str | None] | None = None
    errors: dict[int, str] = field(default_factory=dict)


class RowErrors(BadRowReport):
    """A :class:`BadRowReport` that also remembers why each bad row was skipped, line by line.

    The counts, kept examples and :meth:`check` are those of the base class; :meth:`take`
    returns (and forgets) the per-line reasons gathered since the last call — one block's worth
    when called after each block, so memory stays bounded.
    """

    def __init__(self, dataset: str, max_examples: int = 20, max_content_chars: int = 300) -> None:
        super().__init__(dataset, max_examples, max_content_chars)
        self._pending: dict[int, str] = {}

    def examples_wanted(self, reason: str) -> int:
        return 1 << 62  # the readers pass every bad row of a block, so each gets its reason

    def add(self, reason: str, count: int, examples: Sequence[tuple[str, int, str, str]] = ()) -> None:
        for _, line, detail, _ in examples:
            self._pending.setdefault(int(line), f"{reason}: {detail}")
        keep = max(self.max_examples - len(self._examples[reason]), 0)
        super().add(reason, count, list(examples)[:keep])

    def take(self) -> dict[int, str]:
        out, self._pending = self._pending, {}
        return out


class TabularEncoder:
    """Encodes parsed rows of a tabular dataset (Criteo, Avazu, ``data=tabular``) with a cache's
    fitted preprocessing.

    Multi-valued columns become ``EncodedRows.multi`` and history columns ``EncodedRows.history``
    as training staged them (:class:`~recsys_lab.data.preprocess.tabular.TabularPreprocessor`):
    values split on the column's separator, stripped, empty ones dropped; multi-valued lists cut
    to their ``max_len`` and padded with -1 (an empty list is ``[missing]``); history lists put
    oldest first, their times from the timestamps column (truncated to integers) or positions
    0, 1, ..., and each row's latest ``max_history`` events kept (as the datamodule does when
    loading). Rows whose history columns disagree are dropped by ``derive`` as in training.

    Args:
        spec: the dataset's features (``datamodule.spec()`` of the training config).
        folder: the training run's cache folder (``datamodule.cache_path``).
        max_history: history events kept per row (``datamodule.history_limit()``; None = all).
    """

    def __init__(self, spec: TabularSpec, folder: Path, max_history: int | None = None) -> None:
        self.spec = spec
        self.folder = folder
        self.max_history = max_history
        try:
            self.schema = Schema.load(folder / SCHEMA)
            config = json.loads((folder / MANIFEST).read_text())["config"]
            self.transforms = json.loads((folder / "transforms.json").read_text())
            vocab = pl.read_parquet(folder / "vocab.parquet")
        except (OSError, ValueError, KeyError) as e:
            raise CacheMismatchError(
                f"The cache at {folder} lacks the fitted preprocessing ({e}); it is needed to encode new rows "
                "the way the run was trained. Re-run preprocessing (delete the folder and train again)."
            ) from e
        self.numeric = str(self.transforms.get("numeric", "log_squared"))
        hashing = config.get("hash_buckets")
        self.hash_buckets: int | None = int(hashing[0]) if hashing else None
        if hashing and str(hashing[1]) != pl.__version__:
            log.warning(
                "%s: the cache hashed values with polars %s, this is polars %s: hashed ids may differ",
                spec.dataset, hashing[1], pl.__version__,
            )  # fmt: skip
        self.vocabs = {
            name: frame.select("value", "id")
            for (name,), frame in vocab.partition_by("field", as_dict=True, maintain_order=True).items()
        }
        self.boundaries = {
            c: np.asarray(b, dtype=np.float32)
            for c, b in self.transforms.get("quantile_boundaries", {}).items()
        }
        self.mean = self.transforms.get("mean", {})
        self.std = self.transforms.get("std", {})

    def _vocab(self, name: str) -> pl.DataFrame:
        # A field whose training values were all rarer than the min count has no vocabulary rows.
        return self.vocabs.get(
            name, pl.DataFrame({"value": [], "id": []}, schema={"value": pl.String, "id": pl.Int32})
        )

    def _ids(self, df: pl.DataFrame, name: str) -> np.ndarray:
        """int32 ``[N]`` ids of categorical feature ``name``."""
        if name in self.spec.categorical:
            if self.hash_buckets is not None and name != self.spec.user:
                values = df.select(hashed_expr(name, self.hash_buckets)).to_series()
            else:
                values = df.get_column(name)
            return encode_with_vocab(values, self._vocab(name))
        if name in self.spec.derived:
            values = df.get_column(name).clip(-INT_KEY_LIMIT, INT_KEY_LIMIT).cast(pl.Int64)
            return encode_with_vocab(values, self._vocab(name))
        x = df.get_column(name).to_numpy().astype(np.float64)  # a numeric column, NaN = missing
        if self.numeric == "quantile":
            return num.bucketize(num.staged_values("quantile", x), self.boundaries[name])
        keys = num.log_squared_keys(x)
        values = pl.Series(name, keys, dtype=pl.Int64)
        values = pl.select(pl.when(values == MISSING_KEY).then(None).otherwise(values)).to_series()
        return encode_with_vocab(values, self._vocab(name))

    def _dense(self, df: pl.DataFrame, name: str) -> np.ndarray:
        x = df.get_column(name).to_numpy().astype(np.float64)
        v = num.staged_values(self.numeric, x)
        if self.numeric == "log_standardize":  # in float64, as training did (numpy scalars, not floats)
            v = (v - np.float64(self.mean[name])) / np.float64(self.std[name])
        return np.nan_to_num(v, nan=0.0).astype(np.float32)

    def encode(self, df: pl.DataFrame, labelled: bool) -> EncodedRows:
        """Rows of a parsed (and derived) block -> model inputs."""
        n = df.height
        cats = [f.name for f in self.schema.features if f.kind is FeatureKind.CATEGORICAL]
        dense_names = [f.name for f in self.schema.features if f.kind is FeatureKind.NUMERIC]
        sparse = np.empty((n, len(cats)), dtype=np.int64)
        for j, c in enumerate(cats):
            sparse[:, j] = self._ids(df, c)
        dense = np.empty((n, len(dense_names)), dtype=np.float32)
        for j, c in enumerate(dense_names):
            dense[:, j] = self._dense(df, c)
        labels = df.get_column(self.spec.label).to_numpy().astype(np.float32) if labelled else None
        extra = (
            {
                name: df.get_column(c).to_numpy().astype(np.float32)
                for name, c in self.spec.extra_labels.items()
            }
            if labelled
            else {}
        )
        user = None
        if self.spec.user is not None:
            user = df.get_column(self.spec.user).hash(seed=_USER_HASH_SEED).to_numpy().view(np.int64)
        return EncodedRows(dense, sparse, labels, user, self._multi(df), self._history(df), extra)

    def _list(
        self, df: pl.DataFrame, column: ListColumn, as_float: bool = False
    ) -> tuple[np.ndarray, pl.Series]:
        """A list column's int64 lengths ``[N]`` and its flat values (ids, or Float64 times)."""
        element = pl.element().str.strip_chars()
        element = element.filter(element != "")
        vocab = column.vocab or column.name
        if as_float:
            element = element.cast(pl.Float64, strict=False).fill_null(0.0)
        elif self.hash_buckets is not None and vocab in self.spec.categorical and vocab != self.spec.user:
            element = hashed_expr(element, self.hash_buckets)  # a history of a hashed field
        lists = df.select(pl.col(column.name).str.split(column.separator).list.eval(element)).to_series()
        lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
        return lengths, lists.explode().drop_nulls()

    def _multi(self, df: pl.DataFrame) -> np.ndarray | None:
        """int64 ``[N, M, L]`` ids of the multi-valued columns, or None without any."""
        columns = self.spec.multi_valued
        if not columns:
            return None
        width = max(c.max_len for c in columns)
        out = np.empty((df.height, len(columns), width), dtype=np.int64)
        for j, c in enumerate(columns):
            lengths, flat = self._list(df, c)
            ids = encode_with_vocab(flat, self._vocab(c.name))
            out[:, j, :] = pad_lists(lengths, ids, c.max_len, width)
        return out

    def _history(self, df: pl.DataFrame) -> EncodedHistory | None:
        """The rows' histories (oldest first, latest ``max_history``), or None without any."""
        h = self.spec.history
        if h is None:
            return None
        lengths, _ = self._list(df, h.columns[0])
        flat_ids = []
        for c in h.columns:
            _, flat = self._list(df, c)
            flat_ids.append(encode_with_vocab(flat, self._vocab(c.vocab or c.name)))
        values = np.stack(flat_ids, axis=1).astype(np.int64)  # [T, E] in file order
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        within = np.arange(len(values)) - np.repeat(starts, lengths)  # position in its row
        order = np.arange(len(values))
        if h.order == "newest_first":  # reverse each row's events: oldest first
            order = np.repeat(starts, lengths) + np.repeat(lengths, lengths) - 1 - within
        if h.timestamps is not None:
            times = self._list(df, h.timestamps, as_float=True)[1].to_numpy()[order].astype(np.int64)
        else:
            times = within.astype(np.int64)
        index, offsets = keep_latest(lengths, self.max_history)
        kept = order[index]
        return EncodedHistory(values[kept], np.ones(len(kept), np.int64), times[index], offsets)


def encode_blocks(
    encoder: TabularEncoder,
    source: Source,
    report: BadRowReport,
    block_bytes: int = 8 << 20,
    max_lines: int | None = None,
    split: tuple[int, SplitRule, int] | None = None,
    id_column: str | None = None,
) -> Iterator[EncodedBlock]:
    """Stream ``source`` through training's reader and checks and encode its good rows.

    Args:
        encoder: the training run's preprocessing.
        source: the file and its layout (a layout without a label column gives unlabelled rows).
        report: counts bad rows (use :class:`RowErrors` to get each bad line's reason).
        block_bytes: text parsed at a time.
        max_lines: read at most this many data lines (``data.max_rows_per_file``).
        split: ``(source index, rule, split code)``: keep only the rows that ``rule`` assigns to
            that split (as training's preprocessing did), e.g. the test rows of a data config.
        id_column: a column of the layout returned as the rows' ids (e.g. Avazu's ``id``).
    """
    layout = source.layout
    if id_column is not None and id_column not in layout.read:
        layout = replace(layout, read=(*layout.read, id_column))
    skip = 1 if layout.header and source.format == "text" else 0
    labelled = layout.label is not None
    separators = {c.name: c.separator for c in encoder.spec.list_columns}
    frames = _frames(source, layout, report, skip, block_bytes, max_lines, separators)
    for first, num_lines, df, texts in frames:
        if encoder.spec.derive is not None and df.height:
            df = derive_block(encoder.spec, df, texts, Source(source.path, layout, source.format), report)
        if split is not None and df.height:
            si, rule, code = split
            positions = df.get_column(LINE_COLUMN).to_numpy() - (1 + skip)
            df = df.filter(pl.Series(assign_splits(si, rule, positions, df) == code))
        errors = report.take() if isinstance(report, RowErrors) else {}
        ids = df.get_column(id_column).to_list() if id_column is not None else None
        yield EncodedBlock(
            first_line=first,
            num_lines=num_lines,
            lines=df.get_column(LINE_COLUMN).to_numpy().astype(np.int64),
            rows=encoder.encode(df, labelled),
            ids=ids,
            errors=errors,
        )


def _frames(
    source: Source,
    layout: TextLayout,
    report: BadRowReport,
    skip: int,
    block_bytes: int,
    max_lines: int | None,
    separators: Mapping[str, str],
) -> Iterator[tuple[int, int, pl.DataFrame, Callable[[np.ndarray], list[str]]]]:
    """``(first line, lines, parsed good rows, text of lines)`` of each block of a text file or
    slice of a parquet file (whose "lines" are its 1-based row numbers), as training parses them."""
    if source.format == "parquet":
        rows = max(block_bytes // 256, 1)  # about block_bytes of text
        first = 1
        read_before = report.rows_read
        for df, texts in iter_parquet_frames(source.path, layout, report, separators, rows, max_lines):
            n = report.rows_read - read_before  # the slice's rows, good and bad
            read_before = report.rows_read
            yield first, n, df, texts
            first += n
        return
    blocks = iter_blocks(source.path, skip, block_bytes, max_lines, count_separator=layout.separator)
    for block in prefetch(blocks):

        def texts(lines: np.ndarray, block: Block = block) -> list[str]:
            return line_texts(block, lines - block.first_line, layout.encoding)

        yield block.first_line, block.num_lines, parse_block(block, layout, report, str(source.path)), texts


# ------------------------------------------------------------------------------------------------
# MovieLens
# ------------------------------------------------------------------------------------------------


class MovieLensEncoder:
    """Encodes raw MovieLens rating rows the way a training run's cache encoded its ratings.

    Input rows are in the training data's ratings layout: ``u.data`` (ml-100k, tab-separated),
    ``ratings.dat`` (ml-1m, ``::``) or a RecBole ``.inter`` file (columns found by its header).
    Without the rating — ``user, movie, timestamp`` (ml-100k / ml-1m: three fields on the first
    line; RecBole: no ``rating`` column) — rows are unlabelled. Rows are checked as in training
    (a rating outside [0.5, 5] is ``bad_label``, ids or timestamp that are not integers
    ``non_numeric``, a wrong number of fields ``field_count``).

    Features: each row is joined, as in training, to the user and movie files of the training
    run (``data.path``: ``u.user``/``u.item``, ``users.dat``/``movies.dat`` or ``.user``/``.item``)
    and every categorical value is encoded with the training vocabularies (an unseen user or movie
    id -> OOV; a user or movie missing from those files -> missing side features).

    History: the training data's ratings of the row's user with a timestamp strictly before the
    row's — the rule training applies to its own rows — taken from the cache's events (the whole
    training file, every split), most recent ``max_history``. A row after the training data's end
    sees all of its user's training ratings; a user unknown to training has an empty history. The
    input's own rows never enter a history (their ratings may be unknown), so each row's score
    depends on that row only.

    Args:
        data: the training run's MovieLens datamodule, its cache opened
            (:func:`recsys_lab.runners.common.open_training_data`).
    """

    def __init__(self, data: MovieLensDataModule) -> None:
        folder = data.cache_path
        assert folder is not None, "open the training cache first"
        self.data = data
        self.max_history = data.history_limit()
        self.click_threshold = data.click_threshold
        name = str(data.manifest["config"]["variant"])
        self.variant = VARIANTS[name] if name in VARIANTS else None
        self.recbole_stem = name.split(":", 1)[1] if self.variant is None else None
        variant = self.variant or recbole_variant(data.path, str(self.recbole_stem))
        files = [data.path / f for f in variant.files[1:]]
        gone = [str(f) for f in files if not f.is_file()]
        if gone:
            raise DataError(
                f"The training run's user and movie files {gone} are gone: their columns (gender, age, "
                "occupation, zip; genre, year) are features of every rating. Point data.path (of the run's "
                "config.yaml) at the MovieLens folder it was trained on."
            )
        side = BadRowReport(data.name, max_examples=0)  # counted when training, not here
        self.users, self.movies = side_features(files[0], files[1], variant, side, data.max_rows_per_file)
        vocab = pl.read_parquet(folder / "vocab.parquet")
        self.vocabs = {
            name: frame.select("value", "id")
            for (name,), frame in vocab.partition_by("field", as_dict=True, maintain_order=True).items()
        }
        self._index_events(folder)

    def _index_events(self, folder: Path) -> None:
        """Each training user's events: rows ``start:start + count`` of the cache's events, sorted
        by time (the cache orders events by user, then time); a sorted key ``(user rank, time)``
        per event finds "before time t" for many rows at once."""
        users, starts = [], []
        for split in SPLITS:
            users.append(load_array(folder / split / "user.npy"))
            starts.append(load_array(folder / split / "hist_start.npy"))
        raw, first, counts = np.unique(np.concatenate(users), return_index=True, return_counts=True)
        self.user_ids = raw  # [U] raw user ids, sorted
        self.user_start = np.concatenate(starts)[first].astype(np.int64)  # [U]
        self.user_count = counts.astype(np.int64)
        self.values = load_array(folder / EVENTS / "values.npy")  # [T, 2] movie and genre ids
        self.actions = load_array(folder / EVENTS / "actions.npy")
        self.timestamps = load_array(folder / EVENTS / "timestamps.npy")
        if len(self.timestamps) != int(counts.sum()) or (
            len(raw) and not np.array_equal(self.user_start[1:], np.cumsum(counts)[:-1])
        ):
            raise CacheMismatchError(
                f"The MovieLens cache at {folder} does not hold each user's events in one run; rebuild it."
            )
        ts = np.asarray(self.timestamps, dtype=np.int64)
        self.t_min = int(ts.min()) if len(ts) else 0
        self.t_span = (int(ts.max()) - self.t_min + 2) if len(ts) else 2
        self.keys = np.repeat(np.arange(len(raw), dtype=np.int64), counts) * self.t_span + (ts - self.t_min)

    def layout(self, path: Path) -> TextLayout:
        """The layout of an input file: the training ratings layout, with or without the rating."""
        if self.variant is not None:
            layout = self.variant.ratings
            fields = first_line(path, layout.encoding).count(layout.separator) + 1
            if fields != 3:
                return layout
            columns = ("user_id", "movie_id", "timestamp")
            name = layout.name.replace("rating, ", "")
            return replace(layout, name=name, columns=columns, read=columns, numeric=frozenset(columns))
        fields = [f.split(":", 1)[0].strip() for f in first_line(path).split("\t")]
        columns = tuple(_RECBOLE_NAMES.get(f, f) for f in fields)
        read = tuple(c for c in ("user_id", "movie_id", "rating", "timestamp") if c in columns)
        missing = [c for c in ("user_id", "movie_id", "timestamp") if c not in columns]
        if missing or len(set(columns)) != len(columns):
            raise DataError(
                f"{path}: the run was trained on RecBole atomic files, whose .inter header names user_id, "
                f"item_id, timestamp (and rating); this header names {fields}. Give rows of a .inter file "
                "with its header line."
            )
        return TextLayout(
            name=f"RecBole .inter (tab-separated, name:type header{'' if 'rating' in read else ', no rating'})",
            separator="\t",
            columns=columns,
            read=read,
            numeric=frozenset(read),
            header=True,
        )

    def encode(self, df: pl.DataFrame) -> EncodedRows:
        """Checked rating rows (parsed by :meth:`layout`) -> model inputs, in row order."""
        df = df.with_columns(pl.col(c).cast(pl.Int64) for c in ("user_id", "movie_id", "timestamp"))
        joined = (
            df.join(self.users, on="user_id", how="left")
            .join(self.movies, on="movie_id", how="left")
            .sort(LINE_COLUMN)
        )
        n = joined.height
        sparse = np.empty((n, len(ML_CATEGORICAL)), dtype=np.int64)
        for j, c in enumerate(ML_CATEGORICAL):
            sparse[:, j] = encode_with_vocab(joined.get_column(c), self._vocab(c))
        labels, extra = None, {}
        if "rating" in joined.columns:
            rating = joined.get_column("rating").to_numpy().astype(np.float32)
            labels, extra = (rating >= self.click_threshold).astype(np.float32), {"rating": rating}
        user = joined.get_column("user_id").to_numpy().astype(np.int64)
        history = self._history(user, joined.get_column("timestamp").to_numpy().astype(np.int64))
        dense = np.zeros((n, 0), dtype=np.float32)
        return EncodedRows(dense, sparse, labels, user, None, history, extra)

    def _vocab(self, name: str) -> pl.DataFrame:
        return self.vocabs.get(
            name, pl.DataFrame({"value": [], "id": []}, schema={"value": pl.String, "id": pl.Int32})
        )

    def _history(self, user: np.ndarray, t: np.ndarray) -> EncodedHistory:
        """The training events of each row's user strictly before its time ``t`` (int64 ``[N]``)."""
        rank = np.searchsorted(self.user_ids, user)  # [N]
        known = rank < len(self.user_ids)
        known[known] = self.user_ids[rank[known]] == user[known]
        rank = np.where(known, rank, 0)
        query = rank * self.t_span + np.clip(t - self.t_min, 0, self.t_span - 1)
        end = np.searchsorted(self.keys, query, side="left")  # [N] first event at or after t
        start = self.user_start[rank] if len(self.user_ids) else np.zeros_like(end)
        if self.max_history is not None:
            start = np.maximum(start, end - self.max_history)
        lengths = np.where(known, end - start, 0)  # [N]
        offsets = np.zeros(len(user) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        seg = np.repeat(np.arange(len(user)), lengths)  # [T'] row of each event
        events = np.arange(offsets[-1], dtype=np.int64) - offsets[:-1][seg] + start[seg]
        return EncodedHistory(
            values=np.asarray(self.values[events], dtype=np.int64),
            actions=np.asarray(self.actions[events], dtype=np.int64),
            timestamps=np.asarray(self.timestamps[events], dtype=np.int64),
            offsets=offsets,
        )

    def blocks(
        self, path: Path, report: BadRowReport, block_bytes: int = 8 << 20, max_lines: int | None = None
    ) -> Iterator[EncodedBlock]:
        """Stream the rating rows of ``path``: each block's good rows encoded, bad ones reported
        (with :class:`RowErrors`, each bad line's reason in ``EncodedBlock.errors``)."""
        layout = self.layout(path)
        blocks = iter_blocks(
            path, int(layout.header), block_bytes, max_lines, count_separator=layout.separator
        )
        for block in prefetch(blocks):
            df = check_ratings(parse_block(block, layout, report, str(path)), block, layout, report, path)
            yield EncodedBlock(
                first_line=block.first_line,
                num_lines=block.num_lines,
                lines=df.get_column(LINE_COLUMN).to_numpy().astype(np.int64),
                rows=self.encode(df),
                errors=report.take() if isinstance(report, RowErrors) else {},
            )
