"""``data=avazu``: the Avazu click-through logs (Kaggle CTR prediction challenge) from the raw CSV.

Layout: comma-separated with a header ``id,click,hour,C1,banner_pos,site_id,...,C21`` (the
Kaggle ``train`` file, plain or gzip; columns in any order, extra columns ignored). ``hour`` is
``YYMMDDHH``. ``data.path`` is that file or a folder holding ``train[.gz|.csv|.csv.gz]``, or BARS'
``train.csv``/``valid.csv``/``test.csv``.

Features: ``id`` is dropped; the 21 anonymised columns are categorical; ``hour`` becomes the hour
of day, plus ``weekday`` (and ``weekend``, the BARS Avazu_x4 convention) — all categorical.
``user_field`` (``device_id`` by default) gives ``Batch.user``, the GAUC group (ids counted over
every split, no min count).

Splits: ``random`` (seeded, ``split_fractions``); ``time``: by the ``hour`` value when
``split_time_boundaries`` gives the first validation and test hours (e.g.
``[14102900, 14103000]``: the last two days), else rows in file order (Avazu's ``train`` is sorted
by hour) cut by ``split_fractions``; ``files``: BARS' pre-split files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys_lab.data.cached import TabularDataModule, require_path
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.readers import TextLayout, first_line
from recsys_lab.data.preprocess.split import TEST, TRAIN, VAL
from recsys_lab.data.preprocess.tabular import Derived, Source, SplitRule, TabularSpec
from recsys_lab.data.schema import FeatureRole

LABEL = "click"
TIME = "hour"
ANONYMOUS = (
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
    "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
COLUMNS = ("id", LABEL, TIME, *ANONYMOUS)
TIME_FEATURES = ("hour", "weekday", "weekend")
_RAW_TIME = "_yymmddhh"
_FILE_SPLITS = {"train": TRAIN, "valid": VAL, "val": VAL, "test": TEST}
_EXPECTED = (
    "the Kaggle file train (or train.gz, train.csv, train.csv.gz) with the header id,click,hour,C1,banner_pos,..., "
    "or BARS' train.csv/valid.csv/test.csv"
)


@dataclass(kw_only=True, eq=False)
class AvazuDataModule(TabularDataModule):
    """Avazu click logs from the raw CSV (see the module docstring for layout, features and splits).

    Args (beyond :class:`~recsys_lab.data.cached.CachedDataModule`'s):
        time_features: which of ``hour`` (of day), ``weekday``, ``weekend`` to derive from ``hour``.
        user_field: the column whose values are ``Batch.user`` (GAUC groups), or None.
        hash_buckets: hash the categorical values (except ``user_field``) into this many buckets
            per field before counting (bounded memory); None = exact vocabularies.
        split_time_boundaries: ``[first validation hour, first test hour]`` as YYMMDDHH, for
            ``split=time`` by hour; None cuts the time-ordered rows by ``split_fractions``.
    """

    name = "avazu"
    source_url = "https://www.kaggle.com/c/avazu-ctr-prediction/data"

    time_features: Sequence[str] = ("hour", "weekday")
    user_field: str | None = "device_id"
    split_time_boundaries: Sequence[int] | None = None
    min_count: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        time_features, split_time_boundaries = self.time_features, self.split_time_boundaries
        unknown = [t for t in time_features if t not in TIME_FEATURES]
        if unknown or len(set(time_features)) != len(time_features):
            raise ValueError(
                f"avazu data: time_features={list(time_features)} must be distinct names from {list(TIME_FEATURES)}"
            )
        if self.user_field is not None and self.user_field not in ANONYMOUS:
            raise ValueError(
                f"avazu data: user_field={self.user_field!r} must be one of the categorical columns {list(ANONYMOUS)} or null"
            )
        if split_time_boundaries is not None:
            b = [int(x) for x in split_time_boundaries]
            if len(b) != 2 or b[0] > b[1] or not all(_is_yymmddhh(x) for x in b):
                raise ValueError(
                    f"avazu data: split_time_boundaries={list(split_time_boundaries)} must be two YYMMDDHH hours, "
                    "[first validation hour, first test hour], e.g. [14102900, 14103000]"
                )
            split_time_boundaries = (b[0], b[1])
        self.time_features = tuple(t for t in TIME_FEATURES if t in time_features)
        self.split_time_boundaries = split_time_boundaries

    # -- files ---------------------------------------------------------------------------------
    def input_files(self) -> list[Path]:
        path = require_path(self, _EXPECTED)
        if path.is_file():
            files = [path]
        else:
            bars = [self.existing(path, f"{n}.csv", f"{n}.csv.gz") for n in ("train", "valid", "test")]
            found = self.existing(path, "train", "train.gz", "train.csv", "train.csv.gz")
            if self.split == "files" or (all(bars) and found is None):
                files = [b for b in bars if b is not None]
            elif found is not None:
                files = [found]
            else:
                raise self.not_found(_EXPECTED)
        if self.split == "files" and [f.name.split(".")[0] for f in files] != ["train", "valid", "test"]:
            raise DataError(
                f"avazu data: split=files needs a folder with train.csv, valid.csv and test.csv (the BARS Avazu_x4 "
                f"download); data.path={self.path} gives {[f.name for f in files]}. Use data.split=random or time."
            )
        return files

    def sources(self, files: list[Path]) -> list[Source]:
        return [Source(f, detect_layout(f)) for f in files]

    def serving_source(self, path: Path) -> Source:
        return Source(path, detect_layout(path, allow_unlabelled=True))

    # -- splits --------------------------------------------------------------------------------
    def fixed_splits(self, sources: list[Source]) -> list[int]:
        return [_FILE_SPLITS[s.path.name.split(".")[0]] for s in sources]

    def time_rules(self, sources: list[Source]) -> list[SplitRule]:
        if self.split_time_boundaries is None:
            return super().time_rules(sources)
        b = self.split_time_boundaries
        return [SplitRule("time", column=_RAW_TIME, boundaries=(float(b[0]), float(b[1]))) for _ in sources]

    def preprocess_config(self) -> dict:
        cfg = super().preprocess_config()
        cfg["split_time_boundaries"] = (
            list(self.split_time_boundaries) if self.split_time_boundaries else None
        )
        return cfg

    # -- features ------------------------------------------------------------------------------
    def spec(self) -> TabularSpec:
        roles = {self.user_field: FeatureRole.USER} if self.user_field else {}
        return TabularSpec(
            dataset=self.name,
            label=LABEL,
            categorical=ANONYMOUS,
            derived=self.time_features,
            feature_order=(*self.time_features, *ANONYMOUS),
            roles=roles,
            user=self.user_field,
            derive=self._derive_time,
        )

    def _derive_time(self, df: pl.DataFrame) -> Derived:
        """``hour`` (YYMMDDHH) -> hour of day, weekday (0 = Monday), weekend; bad times are flagged."""
        t = df.get_column(TIME).to_numpy()  # float64, NaN = missing
        with np.errstate(invalid="ignore"):
            ok = (t == np.floor(t)) & (t >= 0) & (t < 1e8)
        ti = np.where(ok, t, 0).astype(np.int64)
        yy, mm, dd, hh = ti // 1_000_000, ti // 10_000 % 100, ti // 100 % 100, ti % 100
        ok &= (mm >= 1) & (mm <= 12) & (dd >= 1) & (hh <= 23)
        month = np.datetime64("2000-01", "M") + np.where(ok, yy * 12 + mm - 1, 0).astype("timedelta64[M]")
        first_day = month.astype("datetime64[D]")
        ok &= dd <= ((month + 1).astype("datetime64[D]") - first_day).astype(np.int64)  # e.g. no 30 February
        days = (first_day - np.datetime64("1970-01-01", "D")).astype(np.int64) + np.where(ok, dd - 1, 0)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        derived = {"hour": hh, "weekday": weekday, "weekend": (weekday >= 5).astype(np.int64)}
        frame = df.with_columns(
            pl.Series(_RAW_TIME, ti), *(pl.Series(n, derived[n]) for n in self.time_features)
        )
        return Derived(frame, invalid=~ok, column=TIME, problem="not a YYMMDDHH time")


def _is_yymmddhh(t: int) -> bool:
    mm, dd, hh = t // 10_000 % 100, t // 100 % 100, t % 100
    return 0 <= t < 10**8 and 1 <= mm <= 12 and 1 <= dd <= 31 and hh <= 23


def detect_layout(path: Path, allow_unlabelled: bool = False) -> TextLayout:
    """The layout of an Avazu CSV, from its header; with ``allow_unlabelled`` (rows to score), a
    header without ``click`` (the Kaggle test file) is accepted too."""
    line = first_line(path)
    if not line.strip():
        raise DataError(
            f"{path} is empty (or starts with an empty line); expected the Avazu CSV header {','.join(COLUMNS[:5])},..."
        )
    header = [h.strip().strip('"') for h in line.split(",")]
    canonical = {c.lower(): c for c in COLUMNS}
    names = [canonical.get(h.lower(), h) for h in header]
    missing = [c for c in COLUMNS if c not in names and c != "id"]
    labelled = LABEL not in missing
    if allow_unlabelled and not labelled:
        missing.remove(LABEL)
    if missing:
        hint = " (the Kaggle test file has no click column)" if missing == [LABEL] else ""
        raise DataError(
            f"{path} is not an Avazu CSV: its header {line[:120]!r} lacks {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f"{hint}. Expected {','.join(COLUMNS[:6])},..."
        )
    return TextLayout(
        name="Avazu CSV (comma-separated, with a header)",
        separator=",",
        columns=tuple(names),
        read=(LABEL, TIME, *ANONYMOUS) if labelled else (TIME, *ANONYMOUS),
        numeric=frozenset({TIME}),
        label=LABEL if labelled else None,
        header=True,
    )
