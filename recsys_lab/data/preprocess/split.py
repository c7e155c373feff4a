"""Train/validation/test assignment of rows: random by a seeded hash, or by time.

Random assignment hashes each row's key (its file and line) with the seed, so it depends neither on
block sizes nor on which other rows exist: the same line of the same file always lands in the same
split. Split sizes are then 8:1:1 in expectation (binomial noise, ~sqrt(N) rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1) > 1e-6:
        raise ValueError(
            f"data.split_fractions={list(fractions)} must be three non-negative fractions "
            "(train, val, test) summing to 1, e.g. [0.8, 0.1, 0.1]"
        )
    return f  # type: ignore[return-value]


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: uint64 ``[N]`` -> well-mixed uint64 ``[N]``."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def row_hash(keys: np.ndarray, seed: int) -> np.ndarray:
    """uint64 hash of int64 row keys under ``seed``."""
    with np.errstate(over="ignore"):
        return splitmix64(keys.astype(np.uint64) ^ splitmix64(np.array([seed], dtype=np.uint64))[0])


def row_key(source: int, lines: np.ndarray) -> np.ndarray:
    """int64 key of lines ``lines`` of the ``source``-th input file."""
    return (np.int64(source) << np.int64(40)) | lines.astype(np.int64)


def random_codes(keys: np.ndarray, seed: int, fractions: Sequence[float]) -> np.ndarray:
    """int8 split codes (TRAIN/VAL/TEST) drawn per row from a seeded hash of its key."""
    u = (row_hash(keys, seed) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)
    f = check_fractions(fractions)
    codes = np.full(len(keys), TEST, dtype=np.int8)
    codes[u < f[0] + f[1]] = VAL
    codes[u < f[0]] = TRAIN
    return codes


def position_cuts(total: int, fractions: Sequence[float]) -> tuple[int, int]:
    """First positions of validation and test when ``total`` time-ordered rows are cut by ``fractions``."""
    f = check_fractions(fractions)
    val_start = round(total * f[0])
    test_start = round(total * (f[0] + f[1]))
    return val_start, test_start


def position_codes(positions: np.ndarray, cuts: tuple[int, int]) -> np.ndarray:
    """int8 split codes of 0-based ``positions`` given :func:`position_cuts`."""
    codes = np.full(len(positions), TRAIN, dtype=np.int8)
    codes[positions >= cuts[0]] = VAL
    codes[positions >= cuts[1]] = TEST
    return codes
