"""Accounting of malformed input rows: counted per reason, the first few kept verbatim.

Reasons (:data:`REASONS`):

- ``field_count``: the line does not have the layout's number of fields;
- ``non_numeric``: a numeric column holds something that is not a finite number;
- ``bad_label``: the label is not 0 or 1 (or, for ratings, not a valid rating);
- ``bad_value``: a value outside its domain (e.g. an Avazu ``hour`` that is not a YYMMDDHH time).

Bad rows are skipped. The first bad rows of each reason (by file, then line) are kept verbatim —
the same ones whatever the block size. :meth:`BadRowReport.check` raises :class:`BadRowsError` when their share of
the rows read exceeds ``max_bad_fraction``, quoting file, line number and content of the first ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from recsys_lab.data.preprocess.errors import BadRowsError

log = logging.getLogger(__name__)

REASONS = ("field_count", "non_numeric", "bad_label", "bad_value")


@dataclass(frozen=True)
class BadRow:
    """One malformed row: where it is, why it was skipped, and what it says (truncated)."""

    file: str
    line: int
    reason: str
    detail: str
    content: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.reason} ({self.detail}): {self.content!r}"


class BadRowReport:
    """Counts rows read and malformed rows per reason; keeps the first ``max_examples`` of each
    reason verbatim (rows must be added file by file, in line order within a reason).

    Args:
        dataset: dataset name, for messages.
        max_examples: how many bad rows of each reason to keep.
        max_content_chars: longest row content kept per example.
    """

    def __init__(self, dataset: str, max_examples: int = 20, max_content_chars: int = 300) -> None:
        self.dataset = dataset
        self.max_examples = max_examples
        self.max_content_chars = max_content_chars
        self.rows_read = 0
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._examples: dict[str, list[BadRow]] = {r: [] for r in REASONS}
        self._files: dict[str, int] = {}

    # -- recording -----------------------------------------------------------------------------
    def add_rows(self, n: int) -> None:
        """Count ``n`` rows read (good and bad)."""
        self.rows_read += n

    def examples_wanted(self, reason: str) -> int:
        """How many more bad rows of ``reason`` to keep verbatim."""
        return max(self.max_examples - len(self._examples[reason]), 0)

    def add(self, reason: str, count: int, examples: Sequence[tuple[str, int, str, str]] = ()) -> None:
        """Record ``count`` bad rows of ``reason``; ``examples`` are ``(file, line, detail, content)``."""
        if reason not in self.counts:
            raise ValueError(f"unknown bad-row reason {reason!r}; known: {REASONS}")
        self.counts[reason] += count
        for file, line, detail, content in examples[: self.examples_wanted(reason)]:
            self._files.setdefault(file, len(self._files))
            text = (
                content
                if len(content) <= self.max_content_chars
                else content[: self.max_content_chars] + "..."
            )
            self._examples[reason].append(BadRow(file, int(line), reason, detail, text))

    @property
    def examples(self) -> list[BadRow]:
        """The kept bad rows of every reason, by file (in reading order), then line."""
        rows = [ex for reason in REASONS for ex in self._examples[reason]]
        return sorted(rows, key=lambda ex: (self._files[ex.file], ex.line))

    # -- reading -------------------------------------------------------------------------------
    @property
    def bad_rows(self) -> int:
        return sum(self.counts.values())

    @property
    def fraction(self) -> float:
        return self.bad_rows / self.rows_read if self.rows_read else 0.0

    def summary(self) -> str:
        """One line: rows read, bad rows and their reasons."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v) or "none"
        return (
            f"{self.dataset}: {self.rows_read} rows read, {self.bad_rows} skipped as malformed "
            f"({100 * self.fraction:.4g}%; {reasons})"
        )

    def log(self) -> None:
        (log.warning if self.bad_rows else log.info)(self.summary())
        for ex in self.examples[:5]:
            log.warning("  skipped %s", ex.describe())

    def check(self, max_bad_fraction: float) -> None:
        """Raise :class:`BadRowsError` if the bad share exceeds ``max_bad_fraction``."""
        if self.bad_rows == 0 or self.fraction <= max_bad_fraction:
            return
        shown = "\n".join(f"    {ex.describe()}" for ex in self.examples[:10])
        raise BadRowsError(
            f"{self.dataset} preprocessing stopped: {self.bad_rows} of {self.rows_read} rows "
            f"({100 * self.fraction:.4g}%) are malformed, above data.max_bad_fraction={max_bad_fraction}.\n"
            f"  by reason: {', '.join(f'{k} {v}' for k, v in self.counts.items() if v)}\n"
            f"  first bad rows (file:line: reason (detail): content):\n{shown}\n"
            "Fix or remove these rows (are the files complete and in the expected layout? see docs/data.md), "
            f"or allow more with data.max_bad_fraction=<fraction> to skip them."
        )

    def to_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "bad_rows": self.bad_rows,
            "fraction": self.fraction,
            "by_reason": dict(self.counts),
            "examples": [asdict(ex) for ex in self.examples],
        }
