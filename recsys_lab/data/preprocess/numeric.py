"""Numeric feature transforms, selected by ``data.numeric``.

========================  =========================================================  ============
transform                 value                                                      feature kind
========================  =========================================================  ============
``log_squared``           ``floor(ln(x)^2)`` if ``x > 2`` else ``int(x)``; then a      categorical
                          vocabulary (the Criteo competition winners' convention,
                          used by FuxiCTR / BARS Criteo_x4)
``log1p``                 ``ln(1 + max(x, 0))`` (DLRM / torchrec Criteo convention)   numeric
``log_standardize``      ``sign(x) ln(1 + |x|)``, then z-scored with the training    numeric
                          split's mean and standard deviation
``quantile``              the bucket of ``x`` among ``num_quantiles`` training         categorical
                          quantiles
========================  =========================================================  ============

Missing values: categorical transforms give them the reserved id 1; numeric transforms give them
0.0 (for ``log_standardize``, the training mean).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from recsys_lab.data.preprocess.vocab import MISSING_KEY

NumericTransform = Literal["log_squared", "log1p", "log_standardize", "quantile"]
NUMERIC_TRANSFORMS: tuple[str, ...] = get_args(NumericTransform)
_LOG_SQUARED_FLOOR = -(1 << 20)


def check_transform(transform: str) -> None:
    if transform not in NUMERIC_TRANSFORMS:
        raise ValueError(f"data.numeric={transform!r} is unknown; use one of {list(NUMERIC_TRANSFORMS)}")


def is_categorical(transform: str) -> bool:
    """Whether the transform turns numeric columns into categorical features."""
    check_transform(transform)
    return transform in ("log_squared", "quantile")


def log_squared_keys(x: np.ndarray) -> np.ndarray:
    """float64 ``[N]`` (NaN = missing) -> int32 ``[N]``: ``floor(ln(x)^2)`` for ``x > 2``, else ``x``
    truncated to an integer (clipped at -2^20); missing -> ``MISSING_KEY``."""
    out = np.full(len(x), MISSING_KEY, dtype=np.int32)
    with np.errstate(invalid="ignore"):
        big = x > 2
        small = x <= 2  # NaN is neither
    out[big] = np.floor(np.log(x[big]) ** 2)
    out[small] = np.maximum(x[small], _LOG_SQUARED_FLOOR)  # float -> int32 truncates toward zero
    return out


def staged_values(transform: str, x: np.ndarray) -> np.ndarray:
    """The per-row part of a dense or quantile transform: float64 ``[N]`` -> float32 ``[N]`` (NaN = missing)."""
    check_transform(transform)
    with np.errstate(invalid="ignore", divide="ignore"):
        if transform == "log1p":
            return np.log1p(np.maximum(x, 0)).astype(np.float32)
        if transform == "log_standardize":
            return (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)
        if transform == "quantile":
            return x.astype(np.float32)
    raise ValueError(f"data.numeric={transform!r} has no staged values (it stages integer keys)")


class Moments:
    """Running float64 count, sum and sum of squares per column, ignoring NaN (missing)."""

    def __init__(self, num_columns: int) -> None:
        self.count = np.zeros(num_columns)
        self.total = np.zeros(num_columns)
        self.total_sq = np.zeros(num_columns)

    def update(self, values: np.ndarray) -> None:
        """``values`` float ``[N, D]`` with NaN for missing."""
        present = ~np.isnan(values)
        x = np.where(present, values, 0).astype(np.float64)
        self.count += present.sum(0)
        self.total += x.sum(0)
        self.total_sq += (x * x).sum(0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-column mean and standard deviation (1.0 where undefined or zero)."""
        n = np.maximum(self.count, 1)
        mean = self.total / n
        var = np.maximum(self.total_sq / n - mean**2, 0)
        std = np.sqrt(var)
        return mean, np.where(std > 0, std, 1.0)


class BottomKSample:
    """A uniform random sample of ``k`` rows, chosen by the smallest hash of each row's key.

    The sample depends only on the row keys and the seed (not on block sizes or order), and holds
    at most ``2k`` rows at any time.
    """

    def __init__(self, k: int, num_columns: int) -> None:
        self.k = k
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.values = np.zeros((0, num_columns), dtype=np.float32)
        self.threshold = np.iinfo(np.uint64).max

    def update(self, hashes: np.ndarray, values: np.ndarray) -> None:
        """``hashes`` uint64 ``[N]`` of the rows, ``values`` float32 ``[N, D]``."""
        keep = hashes <= self.threshold
        if not keep.any():
            return
        self.hashes = np.concatenate([self.hashes, hashes[keep]])
        self.values = np.concatenate([self.values, values[keep]])
        if len(self.hashes) > 2 * self.k:
            self._shrink()

    def _shrink(self) -> None:
        order = np.argsort(self.hashes, kind="stable")[: self.k]
        self.hashes, self.values = self.hashes[order], self.values[order]
        self.threshold = self.hashes.max()

    def sample(self) -> np.ndarray:
        """float32 ``[min(k, rows seen), D]``."""
        if len(self.hashes) > self.k:
            self._shrink()
        return self.values


def quantile_boundaries(values: np.ndarray, num_buckets: int) -> np.ndarray:
    """Distinct inner quantiles of ``values`` (NaN ignored): up to ``num_buckets - 1`` float32 cuts."""
    x = values[~np.isnan(values)]
    if len(x) == 0 or num_buckets < 2:
        return np.zeros(0, dtype=np.float32)
    qs = np.quantile(x.astype(np.float64), np.linspace(0, 1, num_buckets + 1)[1:-1], method="lower")
    return np.unique(qs.astype(np.float32))


def bucketize(values: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """int32 ids: 1 for NaN (missing), ``2 + bucket`` otherwise (``x < b[0]`` is bucket 0)."""
    ids = np.searchsorted(boundaries, values, side="right").astype(np.int32) + 2
    ids[np.isnan(values)] = 1
    return ids
