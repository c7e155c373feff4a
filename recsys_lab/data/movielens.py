"""``data=movielens``: MovieLens ratings as a CTR task, with each sample's rating history.

Layouts (``data.path`` is the unzipped folder):

- ml-100k: ``u.data`` (user, movie, rating, timestamp; tab-separated), ``u.user``
  (user|age|gender|occupation|zip), ``u.item`` (movie|title|release date|video date|URL|19 genre flags);
- ml-1m: ``ratings.dat`` (user::movie::rating::timestamp), ``users.dat``
  (user::gender::age::occupation::zip), ``movies.dat`` (movie::title::genres, ``|``-separated);
- RecBole atomic files (``variant=recbole``, e.g. the ml-100k folder that ships in the
  ``recbole==1.2.1`` wheel under ``recbole/dataset_example/ml-100k/``): ``<name>.inter``
  (``user_id``, ``item_id``, ``rating``, ``timestamp``), ``<name>.user`` (``user_id``, ``age``,
  ``gender``, ``occupation``, ``zip_code``) and ``<name>.item`` (``item_id``, ``release_year``,
  ``class`` or ``genre``: space-separated genres), tab-separated, each with a ``name:type`` header
  line; columns are found by name, so their order does not matter.

MovieLens' licence forbids redistribution, so no data is committed: download it from
https://grouplens.org/datasets/movielens/.

Each rating is a sample; ``click`` is ``rating >= click_threshold`` (4 by default) and ``rating``
is kept as a second label. Features: ``user_id`` (role user), ``movie_id`` (role item), ``gender``,
``age``, ``occupation``, ``zip``, ``genre`` (the first listed), ``year`` (of release), all
categorical. ``Batch.history`` holds the user's earlier ratings (strictly earlier timestamps),
oldest first, at most ``max_history``: event columns ``hist_movie_id`` and ``hist_genre`` (same
ids as ``movie_id`` and ``genre``), the action a bitmask of ``click`` (bit 0) and
``rating_<r>`` (bit r), and the rating's timestamp. ``Batch.user`` is the raw user id.

``packing=user`` (:mod:`recsys_lab.data.packing`, ``split=time`` only) tiles each user's training
ratings into non-overlapping segments (candidate + at most ``max_history`` strictly earlier ratings).
**Timestamp ties** (several ratings of a user in the same second are common): a history holds only
strictly earlier ratings, so a segment's candidate is the first rating (in file order) of its
same-second group and its tie-mates open the window of the next segment; a window is shortened to
end at a group boundary; the tie-mates of a user's last training rating become candidates of
segments without history. Every training rating is in exactly one segment
(``tests/data/test_movielens.py``).

Splits: ``time`` (default): per-user leave-last-out — each user's last rating is test, the one
before validation, the rest train (a user with two ratings has no validation sample, with one no
test sample); ``random``: seeded, ``split_fractions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from torch.utils.data import DataLoader

from recsys_lab.data.cached import EVENTS, CachedDataModule, PackedSplit, WindowShuffleSampler, require_path
from recsys_lab.data.packing import Tiling, tile_user_events
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.cache import NpyWriter, write_json
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.readers import (
    LINE_COLUMN,
    Block,
    TextLayout,
    first_line,
    iter_blocks,
    line_texts,
    parse_block,
)
from recsys_lab.data.preprocess.split import SPLITS, TEST, TRAIN, VAL, random_codes, row_key
from recsys_lab.data.preprocess.vocab import encode_with_vocab, fit_frequency_vocab
from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema

CATEGORICAL = ("user_id", "movie_id", "gender", "age", "occupation", "zip", "genre", "year")
SEQUENCE = ("hist_movie_id", "hist_genre")
ACTIONS = ("click", "rating_1", "rating_2", "rating_3", "rating_4", "rating_5")
LABELS = ("click", "rating")
ROLES = {"user_id": FeatureRole.USER, "movie_id": FeatureRole.ITEM}
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")


@dataclass(frozen=True)
class _Variant:
    name: str
    ratings: TextLayout
    users: TextLayout
    movies: TextLayout
    files: tuple[str, str, str]


def _layout(
    name: str,
    sep: str,
    columns: Sequence[str],
    numeric: Sequence[str],
    encoding: str,
    read: Sequence[str] | None = None,
    header: bool = False,
) -> TextLayout:
    return TextLayout(
        name=name,
        separator=sep,
        columns=tuple(columns),
        read=tuple(columns if read is None else read),
        numeric=frozenset(numeric),
        header=header,
        encoding=encoding,
    )


ML_100K = _Variant(
    "ml-100k",
    _layout("ml-100k u.data (user, movie, rating, timestamp; tab-separated)", "\t", _RATING_COLUMNS, _RATING_COLUMNS, "utf-8"),
    _layout("ml-100k u.user (user|age|gender|occupation|zip)", "|", ("user_id", "age", "gender", "occupation", "zip"), ("user_id",), "latin-1"),
    _layout(
        "ml-100k u.item (movie|title|release date|video release date|URL|19 genre flags)", "|",
        ("movie_id", "title", "release_date", "video_release_date", "url", *(f"genre_{i}" for i in range(19))),
        ("movie_id",), "latin-1",
    ),
    ("u.data", "u.user", "u.item"),
)  # fmt: skip
ML_1M = _Variant(
    "ml-1m",
    _layout("ml-1m ratings.dat (user::movie::rating::timestamp)", "::", _RATING_COLUMNS, _RATING_COLUMNS, "latin-1"),
    _layout("ml-1m users.dat (user::gender::age::occupation::zip)", "::", ("user_id", "gender", "age", "occupation", "zip"), ("user_id",), "latin-1"),
    _layout("ml-1m movies.dat (movie::title::genres)", "::", ("movie_id", "title", "genres"), ("movie_id",), "latin-1"),
    ("ratings.dat", "users.dat", "movies.dat"),
)  # fmt: skip
VARIANTS = {v.name: v for v in (ML_100K, ML_1M)}
RECBOLE = "recbole"
"""``variant`` of RecBole's atomic files (built from the files' headers by :func:`recbole_variant`)."""
# RecBole column names -> ours; the genre column is ``class`` (ml-100k) or ``genre`` (ml-1m).
_RECBOLE_NAMES = {
    "item_id": "movie_id",
    "zip_code": "zip",
    "release_year": "year",
    "class": "genres",
    "genre": "genres",
}
_RECBOLE_NEEDS = (
    ("inter", ("user_id", "movie_id", "rating", "timestamp"), _RATING_COLUMNS),
    ("user", ("user_id", "age", "gender", "occupation", "zip"), ("user_id",)),
    ("item", ("movie_id", "year", "genres"), ("movie_id",)),
)


def _recbole_stems(folder: Path) -> list[str]:
    """Names ``x`` with ``x.inter``, ``x.user`` and ``x.item`` in ``folder``."""
    return sorted(
        p.stem
        for p in folder.glob("*.inter")
        if all((folder / f"{p.stem}.{e}").is_file() for e in ("user", "item"))
    )


def recbole_variant(folder: Path, stem: str) -> _Variant:
    """The layouts of RecBole atomic files ``<stem>.inter/.user/.item``, read from their header lines
    (``name:type`` fields, tab-separated). Raises DataError naming a file that lacks a needed column."""
    layouts = []
    for ext, needs, numeric in _RECBOLE_NEEDS:
        path = folder / f"{stem}.{ext}"
        fields = [f.split(":", 1)[0].strip() for f in first_line(path, "latin-1").split("\t")]
        columns = [_RECBOLE_NAMES.get(f, f) for f in fields]
        missing = [n for n in needs if n not in columns]
        if missing or len(set(columns)) != len(columns):
            theirs = {
                "movie_id": "item_id",
                "zip": "zip_code",
                "year": "release_year",
                "genres": "class or genre",
            }
            raise DataError(
                f"{path}: the RecBole header names the columns {fields}, which lack "
                f"{', '.join(theirs.get(n, n) for n in missing) if missing else 'unique names'}. Give the "
                "unmodified atomic files of a MovieLens dataset (e.g. recbole/dataset_example/ml-100k/)."
            )
        layouts.append(
            _layout(f"RecBole {stem}.{ext} (tab-separated, name:type header)", "\t", columns, numeric, "utf-8", needs, header=True)
        )  # fmt: skip
    return _Variant(f"{RECBOLE}:{stem}", *layouts, (f"{stem}.inter", f"{stem}.user", f"{stem}.item"))


@dataclass(kw_only=True, eq=False)
class MovieLensDataModule(CachedDataModule):
    """MovieLens ml-100k / ml-1m as CTR data with histories (see the module docstring).

    Args (beyond :class:`~recsys_lab.data.cached.CachedDataModule`'s):
        variant: ``auto`` (detected from the files), ``ml-100k``, ``ml-1m`` or ``recbole``.
        click_threshold: a rating at least this high is a click.
        max_history: most recent earlier ratings kept per sample (applied when loading; None = all).
    """

    name = "movielens"
    supports_user_packing = True
    source_url = "https://grouplens.org/datasets/movielens/ (ml-100k.zip, ml-1m.zip)"

    variant: str = "auto"
    click_threshold: float = 4.0
    max_history: int | None = 50
    split: str = "time"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("auto", *VARIANTS, RECBOLE):
            raise ValueError(
                f"movielens data: variant={self.variant!r} is unknown; use auto, {', '.join(VARIANTS)}, {RECBOLE}"
            )
        if self.max_history is not None and self.max_history < 0:
            raise ValueError(f"movielens data: max_history={self.max_history!r} must be >= 0 or null")
        self.click_threshold = float(self.click_threshold)

    @classmethod
    def split_kinds(cls) -> tuple[str, ...]:
        return ("time", "random")

    def history_limit(self) -> int | None:
        return self.max_history

    # -- packing=user --------------------------------------------------------------------------
    def train_tiling(self) -> tuple[np.ndarray, Tiling]:
        """``packing=user``: ``(train rows int64 [S], tiling)``: each segment's candidate as a row
        of the training split and its history window as positions of the cache's event arrays
        (sorted by user, time, movie; see the module docstring for timestamp ties)."""
        if self.split != "time":
            raise ValueError(
                f"movielens data: data.packing=user tiles each user's training ratings, which needs the "
                f"per-user time split (data.split=time), got split={self.split!r}; use data.packing=sample"
            )
        splits = {s: self.split_data(s) for s in SPLITS}
        train = splits["train"].arrays
        hist_start = train["hist_start"].astype(np.int64)  # [R] rows sorted by position
        # Training rows of a user are the positions hist_start, hist_start + 1, ... (leave-last-out).
        block = np.flatnonzero(np.r_[True, hist_start[1:] != hist_start[:-1]])  # [U'] first row per user
        count = np.diff(np.r_[block, hist_start.size])  # [U'] training rows per user
        position = hist_start + np.arange(hist_start.size) - np.repeat(block, count)  # [R]
        ts = splits["train"].arrays["events/timestamps"]
        starts = np.unique(np.concatenate([s.arrays["hist_start"].astype(np.int64) for s in splits.values()]))
        boundary = np.ones(ts.size, bool)
        boundary[1:] = ts[1:] != ts[:-1]
        boundary[starts] = True
        tie_first = np.maximum.accumulate(np.where(boundary, np.arange(ts.size), 0))  # [n] group start
        if not np.array_equal(tie_first[position], train["hist_end"]):
            raise DataError(
                f"movielens data: the cache at {self.cache_path} does not hold each user's training ratings "
                "as their first ratings in time order; delete it to rebuild it"
            )
        first = hist_start[block]
        tiling = tile_user_events(first, first, first + count, self.max_history, tie_first)
        user = np.searchsorted(first, tiling.candidate, side="right") - 1
        rows = block[user] + tiling.candidate - first[user]
        return rows, tiling

    def train_dataloader(self) -> DataLoader:
        if self.packing != "user":
            return super().train_dataloader()
        rows, tiling = self.train_tiling()
        sampler = WindowShuffleSampler(
            len(tiling), self.loader.batch_size, True, self.shuffle_buffer, seed=self.seed
        )
        return self.loader.build(PackedSplit(self.split_data("train"), rows, tiling), sampler)

    # -- files ---------------------------------------------------------------------------------
    def _expected(self) -> str:
        return " or ".join(
            [f"a folder with {', '.join(v.files)} ({v.name})" for v in VARIANTS.values()]
            + [f"RecBole atomic files <name>.inter, <name>.user, <name>.item ({RECBOLE})"]
        )

    def _resolve_variant(self) -> _Variant:
        folder = require_path(self, self._expected())
        if not folder.is_dir():
            raise self.not_found(self._expected() + " (data.path must be the unzipped folder, not a file)")
        candidates = [self.variant] if self.variant != "auto" else [*VARIANTS, RECBOLE]
        for name in candidates:
            if name == RECBOLE:
                stems = _recbole_stems(folder)
                if len(stems) > 1:
                    raise DataError(
                        f"{folder} holds the RecBole atomic files of several datasets {stems}; point "
                        "data.path at a folder with one dataset's <name>.inter/.user/.item."
                    )
                if stems:
                    return recbole_variant(folder, stems[0])
                continue
            v = VARIANTS[name]
            if all((folder / f).is_file() for f in v.files):
                return v
        wanted = [f"{', '.join(VARIANTS[n].files)} ({n})" for n in candidates if n != RECBOLE]
        wanted += [f"<name>.inter, <name>.user, <name>.item ({RECBOLE})" for n in candidates if n == RECBOLE]
        raise self.not_found(
            " or ".join(wanted) + f"; the folder holds {sorted(p.name for p in folder.iterdir())[:10]}"
        )

    def input_files(self) -> list[Path]:
        v = self._resolve_variant()
        return [self.path / f for f in v.files]

    def preprocess_config(self) -> dict[str, Any]:
        return {
            **self.common_config(),
            "variant": self._resolve_variant().name,
            "click_threshold": self.click_threshold,
        }

    def expected_features(self) -> list[tuple[str, str]]:
        return [(c, "categorical") for c in CATEGORICAL] + [(s, "sequence") for s in SEQUENCE]

    # -- building ------------------------------------------------------------------------------
    def build(self, files: list[Path], out: Path, report: BadRowReport) -> dict[str, Any]:
        variant = self._resolve_variant()
        ratings = self._read_ratings(files[0], variant.ratings, report)
        users, movies = side_features(files[1], files[2], variant, report, self.max_rows_per_file)
        report.log()
        report.check(self.max_bad_fraction)
        if ratings.height == 0:
            raise DataError(f"{files[0]} has no valid ratings.")

        df = (
            ratings.join(users, on="user_id", how="left")
            .join(movies, on="movie_id", how="left")
            .sort(["user_id", "timestamp", "movie_id", LINE_COLUMN])
            .with_row_index("pos")
            .with_columns(pl.col("pos").cast(pl.Int64))
            .with_columns(
                pl.col("pos").min().over("user_id").alias("hist_start"),
                pl.col("pos").min().over(["user_id", "timestamp"]).alias("hist_end"),  # strictly earlier only
                (pl.col("pos") - pl.col("pos").min().over("user_id")).alias("rank"),
                pl.len().over("user_id").cast(pl.Int64).alias("count"),
            )
        )
        codes = self._split_codes(df)
        train = codes == TRAIN

        vocab_frames, ids, sizes = [], {}, {}
        for c in CATEGORICAL:
            values = df.get_column(c).cast(pl.String)
            vocab = fit_frequency_vocab(
                values.filter(pl.Series(train)), self.min_count_overrides.get(c, self.min_count)
            )
            ids[c] = encode_with_vocab(values, vocab)
            sizes[c] = 2 + vocab.height
            vocab_frames.append(
                vocab.select(pl.lit(c).alias("field"), "id", "value", pl.col("count").cast(pl.Int64))
            )
        sparse = np.stack([ids[c] for c in CATEGORICAL], axis=1)  # [N, F] int32, rows in `pos` order

        rating = df.get_column("rating").to_numpy().astype(np.float32)
        click = (rating >= self.click_threshold).astype(np.float32)
        rating_bit = np.clip(np.ceil(rating), 1, 5).astype(np.int64)
        actions = click.astype(np.int64) | (1 << rating_bit)

        (out / EVENTS).mkdir()
        np.save(out / EVENTS / "values.npy", np.stack([ids["movie_id"], ids["genre"]], axis=1))
        np.save(out / EVENTS / "actions.npy", actions.astype(np.int8))
        np.save(out / EVENTS / "timestamps.npy", df.get_column("timestamp").to_numpy().astype(np.int64))
        columns = {
            "sparse": sparse,
            "dense": np.zeros((df.height, 0), dtype=np.float32),
            "click": click,
            "rating": rating,
            "user": df.get_column("user_id").to_numpy().astype(np.int64),
            "hist_start": df.get_column("hist_start").to_numpy(),
            "hist_end": df.get_column("hist_end").to_numpy(),
        }
        if not train.any():
            raise DataError(f"movielens: no training rows among {df.height} ratings. Use more data.")
        rows = {}
        for code, split in enumerate(SPLITS):
            mask = codes == code
            rows[split] = int(mask.sum())
            (out / split).mkdir()
            for name, arr in columns.items():
                part = arr[mask]
                w = NpyWriter(out / split / f"{name}.npy", part.dtype, part.shape)
                w.append(part)
                w.close()

        features = [
            Feature(c, FeatureKind.CATEGORICAL, sizes[c], ROLES.get(c, FeatureRole.NONE)) for c in CATEGORICAL
        ]
        features += [
            Feature("hist_movie_id", FeatureKind.SEQUENCE, sizes["movie_id"], FeatureRole.ITEM),
            Feature("hist_genre", FeatureKind.SEQUENCE, sizes["genre"]),
        ]
        Schema(tuple(features), labels=LABELS, action_names=ACTIONS).save(out / "schema.json")
        pl.concat(vocab_frames).write_parquet(out / "vocab.parquet")
        write_json(out / "transforms.json", {"click_threshold": self.click_threshold})
        write_json(out / "bad_rows.json", report.to_dict())
        return {
            "rows": rows,
            "variant": variant.name,
            "events": df.height,
            "vocab_sizes": sizes,
            "num_user_groups": int(df.get_column("user_id").n_unique()),
        }

    def _read_ratings(self, path: Path, layout: TextLayout, report: BadRowReport) -> pl.DataFrame:
        """The ratings, with ratings outside [0.5, 5] or non-integer ids skipped as bad rows."""
        frames = []
        for block in iter_blocks(path, int(layout.header), 64 << 20, self.max_rows_per_file):
            frames.append(
                check_ratings(parse_block(block, layout, report, str(path)), block, layout, report, path)
            )
        if not frames or report.rows_read == 0:
            raise DataError(
                f"{path} is empty: no ratings. Check the file (an interrupted download or unzip?)."
            )
        return pl.concat(frames).select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("movie_id").cast(pl.Int64),
            pl.col("rating").cast(pl.Float32),
            pl.col("timestamp").cast(pl.Int64),
            pl.col(LINE_COLUMN),
        )

    def _split_codes(self, df: pl.DataFrame) -> np.ndarray:
        if self.split == "random":
            return random_codes(
                row_key(0, df.get_column(LINE_COLUMN).to_numpy()), self.split_seed, self.split_fractions
            )
        rank = df.get_column("rank").to_numpy()
        count = df.get_column("count").to_numpy()
        codes = np.full(df.height, TRAIN, dtype=np.int8)
        codes[(rank == count - 1) & (count >= 2)] = TEST
        codes[(rank == count - 2) & (count >= 3)] = VAL
        return codes


def check_ratings(
    df: pl.DataFrame, block: Block, layout: TextLayout, report: BadRowReport, path: Path
) -> pl.DataFrame:
    """The parsed rating rows of ``block`` without (and reporting) those whose rating is outside
    [0.5, 5] or whose ids or timestamp are not integers (a layout without ``rating``: ids only)."""
    id_columns = [c for c in ("user_id", "movie_id", "timestamp") if c in df.columns]
    ids = np.stack([df.get_column(c).to_numpy() for c in id_columns], axis=1)
    good_ids = (ids == np.floor(ids)).all(axis=1)
    checks = []
    if "rating" in df.columns:
        r = df.get_column("rating").to_numpy()
        checks.append(("bad_label", (r >= 0.5) & (r <= 5), "rating", "not a rating in [0.5, 5]"))
    checks.append(("non_numeric", good_ids, "user_id", "ids and timestamp must be integers"))
    bad_any = np.zeros(df.height, dtype=bool)
    for reason, ok, column, problem in checks:
        idx = np.flatnonzero(~ok & ~bad_any)
        bad_any |= ~ok
        if len(idx):
            lines = df.get_column(LINE_COLUMN).to_numpy()[idx]
            want = lines[: report.examples_wanted(reason)]
            texts = line_texts(block, want - block.first_line, layout.encoding)
            values = df.get_column(column)
            report.add(
                reason,
                len(idx),
                [
                    (str(path), int(ln), f"{column} is {values[int(i)]!r}, {problem}", t)
                    for i, ln, t in zip(idx, want, texts)
                ],
            )
    return df.filter(pl.Series(~bad_any))


def side_features(
    users_file: Path, movies_file: Path, variant: _Variant, report: BadRowReport, max_rows: int | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The user and movie files -> the columns joined to each rating (one row per id, the first):
    ``user_id, gender, age, occupation, zip`` and ``movie_id, genre, year``."""
    users = _dedupe(_read(users_file, variant.users, report, max_rows), "user_id").select(
        pl.col("user_id").cast(pl.Int64),
        *(pl.col(c).cast(pl.String) for c in ("gender", "age", "occupation", "zip")),
    )
    movies = _dedupe(_read(movies_file, variant.movies, report, max_rows), "movie_id")
    return users, _movie_features(movies, variant)


def _read(path: Path, layout: TextLayout, report: BadRowReport, max_rows: int | None) -> pl.DataFrame:
    blocks = iter_blocks(path, int(layout.header), 64 << 20, max_rows)
    frames = [parse_block(b, layout, report, str(path)) for b in blocks]
    if not frames:
        raise DataError(f"{path} is empty. Check the file (an interrupted download or unzip?).")
    return pl.concat(frames)


def _dedupe(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per id (the first), ids as Int64."""
    return df.with_columns(pl.col(key).cast(pl.Int64)).unique(subset=[key], keep="first", maintain_order=True)


def _movie_features(movies: pl.DataFrame, variant: _Variant) -> pl.DataFrame:
    """``movie_id, genre, year`` from either variant's movie file."""
    if variant.name.startswith(RECBOLE):
        genre = pl.col("genres").str.split(" ").list.first()
        year = pl.col("year").str.extract(r"(\d{4})", 1)
    elif variant is ML_100K:
        flags = [pl.col(f"genre_{i}") == "1" for i in range(len(GENRES_100K))]
        genre = pl.coalesce([pl.when(f).then(pl.lit(g)) for f, g in zip(flags, GENRES_100K)])
        year = pl.col("release_date").str.extract(r"(\d{4})\s*$", 1)
    else:
        genre = pl.col("genres").str.split("|").list.first()
        year = pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1)
    return movies.select(pl.col("movie_id"), genre.alias("genre"), year.alias("year"))
