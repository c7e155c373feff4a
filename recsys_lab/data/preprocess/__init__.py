"""Preprocessing of raw dataset files into the cache the real-data datamodules read.

- :mod:`.readers`: delimited text (plain or gzip) in blocks of lines, with bad-row detection;
- :mod:`.badrows`: counting and quoting malformed rows; :mod:`.errors`: the errors users see;
- :mod:`.vocab`: vocabularies with min counts (0 = OOV, 1 = missing);
- :mod:`.numeric`: numeric transforms; :mod:`.split`: train/val/test assignment;
- :mod:`.cache`: the cache folder (hash key, atomic writes, checks);
- :mod:`.tabular`: the streaming pipeline for tabular click logs (Criteo, Avazu, ``data=tabular``).
"""

from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.errors import (
    BadRowsError,
    CacheMismatchError,
    DataError,
    DatasetNotFoundError,
)

__all__ = ["BadRowReport", "BadRowsError", "CacheMismatchError", "DataError", "DatasetNotFoundError"]
