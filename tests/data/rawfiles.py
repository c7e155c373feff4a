"""Raw dataset files for the real-dataset tests: the shared Criteo/Avazu samples, and small
MovieLens folders written on the fly (MovieLens itself may not be redistributed).

Also gives the overrides that point a ``data=<real dataset>`` config at such files, for tests that
compose configs (e.g. tests/test_configs.py): :func:`data_overrides`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(
    os.environ.get("RECSYS_LAB_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)

# Documented facts of the shared samples (../shared/data/README.md and the files themselves).
CRITEO_ROWS, CRITEO_CLICKS = 200, 49
AVAZU_ROWS, AVAZU_CLICKS = 100, 20

GENRES_1M = ("Action|Comedy", "Drama", "Comedy|Romance", "Animation|Children's", "Thriller")


def shared_sample(name: str) -> Path:
    """A file of the shared samples folder (the test is skipped when the folder is absent)."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} is not available (set RECSYS_LAB_SHARED_DATA)")
    return path


def criteo_lines() -> list[str]:
    """The raw Criteo sample's lines, without line ends."""
    return shared_sample("criteo_sample_raw.tsv").read_text().splitlines()


def write_lines(path: Path, lines: Sequence[str], gz: bool = False, newline: str = "\n") -> Path:
    """Write ``lines`` (each ended by ``newline``) to ``path``, gzip-compressed if ``gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + newline for line in lines).encode()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_movielens(
    folder: Path, variant: str, users: int = 30, movies: int = 40, ratings: int = 900, seed: int = 0
) -> Path:
    """A small MovieLens folder in the ``ml-100k``, ``ml-1m`` or ``recbole`` layout (RecBole's
    atomic files ``ml-100k.inter/.user/.item`` with ``name:type`` headers); returns it.

    Ratings are random (1..5) with distinct timestamps per user except planted ties: the first
    two ratings of user 1 share one timestamp. The ``recbole`` folder holds the same ratings, users
    and movies (genre, year) as the ``ml-100k`` one drawn with the same arguments.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    user_ids = rng.integers(1, users + 1, ratings)
    user_ids[:3] = 1
    movie_ids = rng.integers(1, movies + 1, ratings)
    stars = rng.integers(1, 6, ratings)
    times = 880_000_000 + rng.permutation(ratings) * 1000
    times[1] = times[0]  # a tie: neither rating is in the other's history
    rows = list(zip(user_ids, movie_ids, stars, times))
    if variant == "ml-100k":
        write_lines(folder / "u.data", [f"{u}\t{m}\t{r}\t{t}" for u, m, r, t in rows])
        write_lines(folder / "u.user", [f"{u}|{20 + u % 40}|{'MF'[u % 2]}|{('student', 'writer', 'other')[u % 3]}|{55100 + u % 9}" for u in range(1, users + 1)])  # fmt: skip
        items = []
        for m in range(1, movies + 1):
            flags = ["0"] * 19
            flags[1 + m % 18] = "1"
            items.append(
                f"{m}|Movie {m} (19{70 + m % 30})|01-Jan-19{70 + m % 30}||http://example.org/{m}|"
                + "|".join(flags)
            )
        (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    elif variant == "recbole":
        from recsys_lab.data.movielens import GENRES_100K

        write_lines(
            folder / "ml-100k.inter",
            ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
            + [f"{u}\t{m}\t{r}\t{t}" for u, m, r, t in rows],
        )
        users_txt = [f"{u}\t{20 + u % 40}\t{'MF'[u % 2]}\t{('student', 'writer', 'other')[u % 3]}\t{55100 + u % 9}" for u in range(1, users + 1)]  # fmt: skip
        write_lines(folder / "ml-100k.user", ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token", *users_txt])  # fmt: skip
        items_txt = [f"{m}\tMovie {m}\t19{70 + m % 30}\t{GENRES_100K[1 + m % 18]} Drama" for m in range(1, movies + 1)]  # fmt: skip
        write_lines(folder / "ml-100k.item", ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq", *items_txt])  # fmt: skip
    elif variant == "ml-1m":
        write_lines(folder / "ratings.dat", [f"{u}::{m}::{r}::{t}" for u, m, r, t in rows])
        write_lines(folder / "users.dat", [f"{u}::{'MF'[u % 2]}::{(1, 18, 25, 35)[u % 4]}::{u % 21}::{48000 + u}" for u in range(1, users + 1)])  # fmt: skip
        movies_dat = [
            f"{m}::Movie {m} é ({1970 + m % 30})::{GENRES_1M[m % len(GENRES_1M)]}"
            for m in range(1, movies + 1)
        ]
        (folder / "movies.dat").write_bytes(("\n".join(movies_dat) + "\n").encode("latin-1"))
    else:
        raise ValueError(variant)
    return folder


def data_overrides(option: str, tmp_path: Path) -> list[str]:
    """Overrides that let ``data=<option>`` run on small files: the shared samples for Criteo and
    Avazu (and their presets), a generated ml-100k folder for MovieLens; caches in ``tmp_path``.
    Empty for datasets that need no files (synthetic)."""
    cache = f"data.cache_dir={tmp_path / 'data_cache'}"
    if option.startswith("criteo"):
        return [f"data.path={shared_sample('criteo_sample_raw.tsv')}", cache, "data.min_count=1"]
    if option.startswith("avazu"):
        return [f"data.path={shared_sample('avazu_sample.csv')}", cache, "data.min_count=1"]
    if option.startswith("movielens"):
        return [f"data.path={write_movielens(tmp_path / 'ml-100k', 'ml-100k')}", cache]
    return []
