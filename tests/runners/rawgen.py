"""Small raw Criteo and Avazu files with a strong planted click signal, written by the tests
themselves: :mod:`recsys_lab.data.samples` rows (the one generator of raw rows) with the features'
effects on the click logit scaled by :data:`SIGNAL`, so a tiny run learns something."""

from __future__ import annotations

from pathlib import Path

from recsys_lab.data import samples
from tests.data.rawfiles import write_lines

SIGNAL = 3.0
"""Scale of the planted click signal (1.0 is the samples' realistic, weak one)."""


def criteo_rows(n: int, seed: int = 0) -> list[str]:
    """``n`` raw Criteo lines (label, I1..I13, C1..C26; tab-separated; '' = missing)."""
    # The samples plant lines 1 and 2 and so need two rows; a single row is line 1.
    return samples.criteo_raw_lines(max(n, 2), seed, SIGNAL)[:n]


def write_criteo(path: Path, n: int, seed: int = 0, labelled: bool = True) -> Path:
    rows = criteo_rows(n, seed)
    return write_lines(path, rows if labelled else [r.split("\t", 1)[1] for r in rows])


def avazu_rows(n: int, seed: int = 0, labelled: bool = True) -> list[str]:
    """A header and ``n`` Avazu CSV lines (sorted by hour); without the ``click`` column unless
    ``labelled``."""
    lines = samples.avazu_lines(n, seed, SIGNAL)
    if labelled:
        return lines
    click = samples.AVAZU_HEADER.index("click")
    return [",".join(f for j, f in enumerate(line.split(",")) if j != click) for line in lines]


def write_avazu(path: Path, n: int, seed: int = 0, labelled: bool = True) -> Path:
    return write_lines(path, avazu_rows(n, seed, labelled))
