"""Small synthetic files in the real Criteo and Avazu layouts, for tests, examples and trying the
readers without downloading anything.

``python -m recsys_lab.data.samples {criteo_raw,criteo_csv,avazu} OUT [--rows N] [--seed S] [--signal X]``

Layouts (what ``data=criteo`` / ``data=avazu`` read, quirks included):

- ``criteo_raw``: the Criteo Display Advertising Challenge raw layout (``train.txt``, the 1TB
  ``day_N`` files): no header, tab-separated ``label, I1..I13, C1..C26``; integers as written
  (``I2`` may be negative: -1, -2); empty field = missing; categoricals are 8-hex-digit hashes.
- ``criteo_csv``: the same rows as a comma-separated file with a header ``label,I1..I13,C1..C26``
  and the integers written as floats (``260.0``), as pandas exports them, except ``I2``, which is
  never missing and so stays an integer.
- ``avazu``: the Avazu ``train`` layout: comma-separated with a header
  ``id,click,hour,C1,banner_pos,site_id,...,C21``; ``id`` an unsigned 64-bit integer, ``hour``
  ``YYMMDDHH`` over six days (Tue 21 .. Sun 26 October 2014), rows sorted by hour.

The rows are synthetic (no real row is copied) but keep the properties the readers and tests
rely on: Criteo-like missing rates (with the real co-missing groups of categoricals),
heavy-tailed integers, power-law categorical frequencies (so ``data.min_count`` drops values),
labels from a planted logit with a realistic click rate (~25% Criteo, ~18% Avazu); for Avazu,
site vs. app traffic with their "null" site/app values, most rows on the anonymous ``device_id``
``a99f214a`` and the rest on a few dozen repeated devices (GAUC groups), ``C20`` mostly ``-1``.

Planted rows, so that tests can name them: Criteo line 1 has ``I1`` missing, ``I2 = 3``,
``I3 = 260`` and ``C19, C20, C25, C26`` missing; line 2 has ``I2 = -1``.

The output depends only on ``rows``, ``seed`` and ``signal``: the only randomness is
``random.Random(seed).random()``, whose sequence Python keeps stable across versions, and the
hashes are BLAKE2b digests.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import math
import os
import random
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------


def _hash(*parts: object) -> str:
    """An 8-hex-digit hash of ``parts`` (the look of Criteo's and Avazu's anonymised values)."""
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=4).hexdigest()


def _effect(*parts: object) -> float:
    """A fixed pseudo-random effect in [-0.5, 0.5) of a feature value on the logit."""
    return int(_hash("effect", *parts), 16) / 2**32 - 0.5


class _Draw:
    """Draws built only on ``random.Random.random()`` (stable across Python versions)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uniform(self) -> float:
        return self.rng.random()

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        return min(int(self.rng.random() * n), n - 1)

    def weighted(self, cumulative: Sequence[float]) -> int:
        """An index drawn with the weights whose running sums are ``cumulative``."""
        return min(bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1]), len(cumulative) - 1)

    def heavy_int(self, log_max: float) -> int:
        """A heavy-tailed non-negative integer, up to ``exp(log_max) - 1`` (log-uniform)."""
        return int(math.exp(self.rng.random() * log_max)) - 1

    def uint64(self) -> int:
        return (self.below(2**32) << 32) | self.below(2**32)


def _zipf(n: int, s: float = 1.1) -> list[float]:
    """Running sums of power-law weights ``1 / (k + 1)^s`` over ``n`` values."""
    return list(itertools.accumulate(1 / (k + 1) ** s for k in range(n)))


def _choices(values: Sequence[object], weights: Sequence[float]) -> tuple[Sequence[object], list[float]]:
    return values, list(itertools.accumulate(weights))


def _pick(draw: _Draw, table: tuple[Sequence[object], list[float]]) -> object:
    values, cumulative = table
    return values[draw.weighted(cumulative)]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------------------------------------------
# Criteo
# ------------------------------------------------------------------------------------------------

CRITEO_INTEGERS = [f"I{j}" for j in range(1, 14)]
CRITEO_CATEGORICALS = [f"C{j}" for j in range(1, 27)]
CRITEO_HEADER = ["label", *CRITEO_INTEGERS, *CRITEO_CATEGORICALS]

# Per integer field: (missing rate, log of the largest value), after the Kaggle data's rates.
_CRITEO_INT = [
    (0.45, 3.5), (0.0, 7.0), (0.21, 6.0), (0.22, 4.0), (0.03, 11.0), (0.22, 7.0), (0.04, 5.0),
    (0.0005, 4.0), (0.04, 6.5), (0.45, 1.8), (0.04, 3.5), (0.77, 2.5), (0.22, 4.5),
]  # fmt: skip
# Vocabulary size of C1..C26, scaled down from the Kaggle cardinalities to a few hundred rows.
_CRITEO_VOCAB = [
    30, 120, 3000, 1500, 14, 8, 2500, 25, 3, 400, 1500, 3000, 1000,
    15, 2000, 3000, 10, 200, 60, 4, 3000, 6, 12, 200, 25, 150,
]  # fmt: skip
# Categoricals missing one by one, and the groups that are missing together in the real data.
_CRITEO_MISSING = {"C6": 0.13, "C22": 0.76}
_CRITEO_CO_MISSING = [(0.41, ("C19", "C20", "C25", "C26")), (0.04, ("C3", "C4", "C12", "C16", "C21", "C24"))]
_CRITEO_LOGIT_FIELDS = ("C1", "C2", "C5", "C6", "C8", "C14", "C17", "C23")


def criteo_rows(rows: int = 200, seed: int = 0, signal: float = 1.0) -> list[list[str]]:
    """``rows`` Criteo rows as the 40 raw text fields (``label, I1..I13, C1..C26``; '' = missing).

    ``signal`` scales the features' effects on the click logit (1.0: a realistic, weak signal;
    tests that need a model to learn something from a few thousand rows use ~3)."""
    if rows < 2:
        raise ValueError(f"criteo_rows(rows={rows}): need at least 2 rows (lines 1 and 2 are planted)")
    draw = _Draw(seed)
    zipfs = {n: _zipf(n) for n in set(_CRITEO_VOCAB)}
    out = []
    for i in range(rows):
        ints: list[int | None] = []
        for j, (missing, log_max) in enumerate(_CRITEO_INT):
            if j == 1:  # I2: never missing, sometimes negative
                u = draw.uniform()
                ints.append(-1 if u < 0.08 else -2 if u < 0.09 else draw.heavy_int(log_max))
            else:
                ints.append(None if draw.chance(missing) else draw.heavy_int(log_max))
        cats: dict[str, str] = {}
        for j, name in enumerate(CRITEO_CATEGORICALS):
            k = draw.weighted(zipfs[_CRITEO_VOCAB[j]])
            cats[name] = "" if draw.chance(_CRITEO_MISSING.get(name, 0.0)) else _hash(name, k)
        for rate, group in _CRITEO_CO_MISSING:
            if draw.chance(rate):
                cats.update(dict.fromkeys(group, ""))
        if i == 0:  # planted: I1 missing, I2 = 3, I3 = 260, the C19/C20/C25/C26 group missing
            ints[:3] = [None, 3, 260]
            cats.update(dict.fromkeys(_CRITEO_CO_MISSING[0][1], ""))
        elif i == 1:  # planted: I2 = -1
            ints[1] = -1
        s = signal  # (c * s) * x is bit-identical to c * x at s = 1
        logit = -1.3 + 0.25 * s * math.log1p(max(ints[1], 0)) / 7 - 0.2 * s * (ints[0] is None)
        logit += sum(1.6 * s * _effect(name, cats[name]) for name in _CRITEO_LOGIT_FIELDS)
        label = int(draw.chance(_sigmoid(logit)))
        out.append([str(label), *("" if x is None else str(x) for x in ints), *cats.values()])
    return out


def criteo_raw_lines(rows: int = 200, seed: int = 0, signal: float = 1.0) -> list[str]:
    """The raw layout's lines (no header, tab-separated), without line ends."""
    return ["\t".join(fields) for fields in criteo_rows(rows, seed, signal)]


def criteo_csv_lines(rows: int = 200, seed: int = 0, signal: float = 1.0) -> list[str]:
    """The CSV layout's lines (header first; integers but ``I2`` written as floats), without line ends."""
    lines = [",".join(CRITEO_HEADER)]
    for fields in criteo_rows(rows, seed, signal):
        ints = [x if x == "" or j == 1 else f"{x}.0" for j, x in enumerate(fields[1:14])]
        lines.append(",".join([fields[0], *ints, *fields[14:]]))
    return lines


# ------------------------------------------------------------------------------------------------
# Avazu
# ------------------------------------------------------------------------------------------------

AVAZU_HEADER = [
    "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
    "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
    "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
]  # fmt: skip
ANONYMOUS_DEVICE = "a99f214a"  # Avazu's device_id of most (site traffic) rows
_NULL_APP = ("ecad2386", "7801e8d9", "07d7df22")  # app_id, app_domain, app_category of site traffic
_NULL_SITE = ("85f751fd", "c4e18dd6", "50e219e0")  # site_id, site_domain, site_category of app traffic
_DAYS = [date(2014, 10, d) for d in range(21, 27)]  # Tue 21 .. Sun 26 October 2014


def avazu_lines(rows: int = 200, seed: int = 0, signal: float = 1.0) -> list[str]:
    """The Avazu layout's lines (header first, rows sorted by hour), without line ends.

    ``signal`` scales the features' effects on the click logit, as in :func:`criteo_rows`."""
    if rows < 1:
        raise ValueError(f"avazu_lines(rows={rows}): need at least 1 row")
    draw = _Draw(seed)
    hour_of_day = _choices(range(24), [1 + 2 * math.sin(math.pi * h / 24) ** 2 for h in range(24)])
    sites, apps, devices, models = _zipf(25), _zipf(20), _zipf(30, 0.8), _zipf(80)
    c1 = _choices(["1005", "1002", "1010"], [0.9, 0.06, 0.04])
    sizes = _choices([("320", "50"), ("300", "250"), ("728", "90")], [0.95, 0.03, 0.02])
    conn = _choices(["0", "2", "3"], [0.86, 0.1, 0.04])
    c14s = _zipf(40)
    c19 = _choices(["35", "39", "167", "161", "1327", "431"], [6, 3, 1, 1, 0.5, 0.5])
    c21 = _choices(["79", "157", "23", "221", "61", "33", "48", "71"], [5, 2, 1, 1, 1, 0.5, 0.5, 0.5])
    out: list[tuple[str, str, str]] = []
    for _ in range(rows):
        day = _DAYS[draw.below(len(_DAYS))]
        hour = f"{day:%y%m%d}{_pick(draw, hour_of_day):02d}"
        ad_c1 = str(_pick(draw, c1))
        device_type = {"1005": "1", "1002": "0", "1010": "4"}[ad_c1]
        banner = "1" if draw.chance(0.2) else "0"
        if draw.chance(0.8):  # site traffic: the null app, mostly the anonymous device
            s = draw.weighted(sites)
            site = (_hash("site_id", s), _hash("site_domain", s), _hash("site_category", s % 6))
            app = _NULL_APP
            traffic = site[2]
        else:  # app traffic: the null site, a known device
            a = draw.weighted(apps)
            site = _NULL_SITE
            app = (_hash("app_id", a), _hash("app_domain", a % 7), _hash("app_category", a % 5))
            traffic = app[2]
        if site == _NULL_SITE or draw.chance(0.08):
            d = draw.weighted(devices)
            device = (_hash("device_id", d), _hash("device_ip", d), _hash("device_model", d % 40))
        else:
            device = (
                ANONYMOUS_DEVICE,
                _hash("device_ip", "anon", draw.below(5000)),
                _hash("device_model", draw.weighted(models)),
            )
        c14 = draw.weighted(c14s)
        width, height = _pick(draw, sizes)
        c20 = "-1" if draw.chance(0.55) else str(100000 + draw.below(200))
        fields = [
            ad_c1, banner, *site, *app, *device, device_type, str(_pick(draw, conn)), str(15700 + 97 * c14),
            width, height, str(1700 + 23 * (c14 // 3)), str(draw.below(4)), str(_pick(draw, c19)), c20,
            str(_pick(draw, c21)),
        ]  # fmt: skip
        s = signal  # (c * s) * x is bit-identical to c * x at s = 1
        hour_effect = 0.3 * s * math.cos(2 * math.pi * int(hour[-2:]) / 24)
        logit = (
            -1.7
            + 0.4 * s * (banner == "1")
            + 1.5 * s * _effect(traffic)
            + 1.2 * s * _effect("C14", c14)
            + hour_effect
        )
        click = str(int(draw.chance(_sigmoid(logit))))
        out.append((hour, str(draw.uint64()), ",".join([click, hour, *fields])))
    out.sort(key=lambda t: (t[0], t[1]))  # by hour, ids in text order within the hour (as in `train`)
    return [",".join(AVAZU_HEADER), *(f"{id_},{rest}" for _, id_, rest in out)]


# ------------------------------------------------------------------------------------------------
# Files and the command line
# ------------------------------------------------------------------------------------------------

LAYOUTS: dict[str, Callable[[int, int, float], list[str]]] = {
    "criteo_raw": criteo_raw_lines,
    "criteo_csv": criteo_csv_lines,
    "avazu": avazu_lines,
}


def write_sample(layout: str, path: str | Path, rows: int = 200, seed: int = 0, signal: float = 1.0) -> Path:
    """Write the ``layout`` sample (one of :data:`LAYOUTS`) of ``rows`` rows to ``path``
    (atomically; ``\\n`` line ends, parent folders created); returns the path. ``signal`` scales
    the planted click signal (see :func:`criteo_rows`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown sample layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text("".join(line + "\n" for line in LAYOUTS[layout](rows, seed, signal)), encoding="ascii")
    os.replace(tmp, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m recsys_lab.data.samples",
        description="Write a small synthetic file in the Criteo or Avazu layout.",
    )
    parser.add_argument("layout", choices=list(LAYOUTS), help="file layout")
    parser.add_argument("out", type=Path, help="file to write")
    parser.add_argument("--rows", type=int, default=200, help="data rows (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--signal", type=float, default=1.0, help="scale of the planted click signal (default 1)"
    )
    args = parser.parse_args(argv)
    path = write_sample(args.layout, args.out, args.rows, args.seed, args.signal)
    print(f"wrote {args.rows} {args.layout} rows to {path}")


if __name__ == "__main__":
    main()
