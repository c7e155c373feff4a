"""Errors raised on bad input data. Each message says what was wrong, where, and what to do."""

from __future__ import annotations


class DataError(ValueError):
    """The input data cannot be used as it is (bad rows, empty or unreadable files, a stale cache)."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset's files are not where ``data.path`` points."""


class BadRowsError(DataError):
    """More malformed rows than ``data.max_bad_fraction`` allows."""


class CacheMismatchError(DataError):
    """A preprocessed cache does not match the config that asked for it."""


class CacheDamagedError(CacheMismatchError):
    """A file of a preprocessed cache is missing, truncated or changed since it was written."""
