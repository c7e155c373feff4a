"""``data=criteo``: the Criteo Display Advertising Challenge logs and the Criteo 1TB click logs.

Layouts read (each plain or gzip-compressed):

- raw: no header, tab-separated ``label, I1..I13, C1..C26`` — the Kaggle ``train.txt`` and the
  1TB ``day_0 .. day_23`` files; integers as written, empty field = missing, categoricals are
  8-hex-digit hashes;
- CSV with a header naming ``label`` (any case), ``I1..I13``, ``C1..C26`` in any order, numbers
  possibly written as floats (``260.0``) — the common export, and the BARS ``Criteo_x4`` files.

``data.path`` is a file or a folder holding ``day_<N>[.gz]`` files, ``train.txt[.gz]``, BARS'
``train.csv``/``valid.csv``/``test.csv``, or a single ``.csv``/``.tsv``/``.txt`` file.

Features: ``I1..I13`` (numeric, transformed by ``data.numeric``) then ``C1..C26``
(categorical). Criteo has no user id, so batches carry ``user=None`` and GAUC is NaN.

Splits: ``random`` (seeded, ``split_fractions``); ``time``: with day files, every day but the last
trains and the last day is halved into validation and test (the DLRM / torchrec convention), with
one file the rows (in time order) are cut by ``split_fractions``; ``files``: BARS' pre-split files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from recsys_lab.data.cached import TabularDataModule, require_path
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.readers import TextLayout, count_lines, first_line
from recsys_lab.data.preprocess.split import TEST, TRAIN, VAL, position_cuts
from recsys_lab.data.preprocess.tabular import Source, SplitRule, TabularSpec

LABEL = "label"
NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = (LABEL, *NUMERIC, *CATEGORICAL)

RAW_LAYOUT = TextLayout(
    name="Criteo raw (no header, tab-separated: label, I1..I13, C1..C26)",
    separator="\t",
    columns=COLUMNS,
    read=COLUMNS,
    numeric=frozenset(NUMERIC),
    label=LABEL,
)

_DAY = re.compile(r"day_(\d+)(\.gz)?")
_FILE_SPLITS = {"train": TRAIN, "valid": VAL, "val": VAL, "test": TEST}
_EXPECTED = (
    "train.txt or train.txt.gz (Kaggle Display Advertising Challenge), day_0 .. day_23 [.gz] (Criteo 1TB "
    "click logs), BARS' train.csv/valid.csv/test.csv, or one CSV file with a header label,I1..I13,C1..C26"
)


@dataclass(kw_only=True, eq=False)
class CriteoDataModule(TabularDataModule):
    """Criteo click logs from their raw files (see the module docstring for layouts and splits).

    Args: see :class:`~recsys_lab.data.cached.CachedDataModule` and
    :class:`~recsys_lab.data.cached.TabularDataModule`; the defaults follow BARS' Criteo_x4
    (``conf/data/criteo_x4.yaml``).
    """

    name = "criteo"
    source_url = (
        "https://ailab.criteo.com/ressources/ (Kaggle Display Advertising Challenge: "
        "https://www.kaggle.com/c/criteo-display-ad-challenge; 1TB click logs: "
        "https://huggingface.co/datasets/criteo/CriteoClickLogs)"
    )

    min_count: int = 10

    # -- files ---------------------------------------------------------------------------------
    def input_files(self) -> list[Path]:
        path = require_path(self, _EXPECTED)
        if path.is_file():
            files = [path]
        else:
            files = self._discover(path)
        if self.split == "files" and [self._file_role(f) for f in files] != ["train", "valid", "test"]:
            raise DataError(
                f"criteo data: split=files needs a folder with train.csv, valid.csv and test.csv (the BARS "
                f"Criteo_x4 download); data.path={self.path} gives {[f.name for f in files]}. "
                "Use data.split=random or time for raw files."
            )
        return files

    def _discover(self, folder: Path) -> list[Path]:
        days = sorted(
            (f for f in folder.iterdir() if f.is_file() and _DAY.fullmatch(f.name)),
            key=lambda f: int(_DAY.fullmatch(f.name).group(1)),  # type: ignore[union-attr]
        )
        if days:
            return days
        found = self.existing(folder, "train.txt", "train.txt.gz")
        if found:
            return [found]
        bars = [self.existing(folder, f"{n}.csv", f"{n}.csv.gz") for n in ("train", "valid", "test")]
        if all(bars):
            return bars  # type: ignore[return-value]
        single = sorted(
            f for f in folder.iterdir() if f.is_file() and re.search(r"\.(csv|tsv|txt)(\.gz)?$", f.name)
        )
        if len(single) == 1:
            return single
        raise self.not_found(_EXPECTED)

    @staticmethod
    def _file_role(path: Path) -> str:
        return path.name.split(".")[0]

    def sources(self, files: list[Path]) -> list[Source]:
        return [Source(f, detect_layout(f)) for f in files]

    def serving_source(self, path: Path) -> Source:
        return Source(path, detect_layout(path, allow_unlabelled=True))

    # -- splits --------------------------------------------------------------------------------
    def fixed_splits(self, sources: list[Source]) -> list[int]:
        return [_FILE_SPLITS[self._file_role(s.path)] for s in sources]

    def time_rules(self, sources: list[Source]) -> list[SplitRule]:
        if len(sources) > 1 and all(_DAY.fullmatch(s.path.name) for s in sources):
            # DLRM / torchrec: days 0..N-2 train; the last day's first half validation, second half test.
            last = sources[-1]
            n = count_lines(last.path, 1 if last.layout.header else 0, self.max_rows_per_file)
            cuts = position_cuts(n, (0.0, 0.5, 0.5))
            return [SplitRule("fixed", split=TRAIN) for _ in sources[:-1]] + [
                SplitRule("position", cuts=cuts)
            ]
        return super().time_rules(sources)

    # -- features ------------------------------------------------------------------------------
    def spec(self) -> TabularSpec:
        return TabularSpec(
            dataset=self.name,
            label=LABEL,
            categorical=CATEGORICAL,
            numeric=NUMERIC,
            feature_order=(*NUMERIC, *CATEGORICAL),
        )


UNLABELLED_LAYOUT = TextLayout(
    name="Criteo raw without labels (no header, tab-separated: I1..I13, C1..C26)",
    separator="\t",
    columns=COLUMNS[1:],
    read=COLUMNS[1:],
    numeric=frozenset(NUMERIC),
)


def detect_layout(path: Path, allow_unlabelled: bool = False) -> TextLayout:
    """The layout of a Criteo file, from its first line (raw tab-separated, or CSV with a header).

    With ``allow_unlabelled`` (rows to score), files without the label column are accepted too:
    the Kaggle ``test.txt`` layout, or a CSV header without ``label``.
    """
    line = first_line(path)
    if not line.strip():
        raise DataError(
            f"{path} is empty (or starts with an empty line); expected Criteo rows. Check the file."
        )
    if "\t" in line:
        fields = line.split("\t")
        if len(fields) == len(COLUMNS):
            return RAW_LAYOUT
        if len(fields) == len(COLUMNS) - 1 and allow_unlabelled:
            return UNLABELLED_LAYOUT
        if len(fields) == len(COLUMNS) - 1:
            raise DataError(
                f"{path} has {len(fields)} tab-separated fields per line, not {len(COLUMNS)}: it looks like the "
                "unlabelled Kaggle test.txt. Point data.path at train.txt (or the day_N files)."
            )
        raise DataError(
            f"{path}: the first line has {len(fields)} tab-separated fields; the raw Criteo layout has "
            f"{len(COLUMNS)} (label, I1..I13, C1..C26)."
        )
    header = [h.strip().strip('"') for h in line.split(",")]
    canonical = {c.lower(): c for c in COLUMNS}
    names = [canonical.get(h.lower(), h) for h in header]
    missing = [c for c in COLUMNS if c not in names]
    labelled = LABEL not in missing
    if allow_unlabelled and not labelled:
        missing.remove(LABEL)
    if missing:
        raise DataError(
            f"{path} is neither raw Criteo (tab-separated) nor a CSV with a header naming label, I1..I13, "
            f"C1..C26: its first line {line[:120]!r} lacks {missing[:5]}{'...' if len(missing) > 5 else ''}."
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path}: the header names {dupes} more than once.")
    return TextLayout(
        name="Criteo CSV (comma-separated, with a header)",
        separator=",",
        columns=tuple(names),
        read=COLUMNS if labelled else COLUMNS[1:],
        numeric=frozenset(NUMERIC),
        label=LABEL if labelled else None,
        header=True,
    )
