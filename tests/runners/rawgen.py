"""Small raw Criteo and Avazu files with a planted click signal, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.data.rawfiles import write_lines


def criteo_rows(n: int, seed: int = 0) -> list[str]:
    """``n`` raw Criteo lines (label, I1..I13, C1..C26; tab-separated). Clicks follow C1 and I1;
    some fields are empty."""
    rng = np.random.default_rng(seed)
    c1 = rng.integers(0, 20, n)
    i1 = rng.integers(0, 50, n)
    logit = (c1 - 10) / 4 + (i1 - 25) / 25
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    lines = []
    for r in range(n):
        ints = [str(i1[r])] + [
            ("" if rng.random() < 0.1 else str(int(rng.integers(0, 300)))) for _ in range(12)
        ]
        cats = [f"{c1[r]:08x}"] + [
            ("" if rng.random() < 0.1 else f"{int(rng.integers(0, 30)):08x}") for _ in range(25)
        ]
        lines.append("\t".join([str(int(label[r])), *ints, *cats]))
    return lines


def write_criteo(path: Path, n: int, seed: int = 0, labelled: bool = True) -> Path:
    rows = criteo_rows(n, seed)
    return write_lines(path, rows if labelled else [r.split("\t", 1)[1] for r in rows])


AVAZU_HEADER = (
    "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,device_id,"
    "device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21"
)


def avazu_rows(n: int, seed: int = 0, labelled: bool = True) -> list[str]:
    """A header and ``n`` Avazu CSV lines; clicks follow site_id and the hour of day."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 15, n)
    hour = rng.integers(0, 24, n)
    logit = (site - 7) / 3 + (hour - 12) / 12
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    header = AVAZU_HEADER if labelled else AVAZU_HEADER.replace("click,", "")
    lines = [header]
    for r in range(n):
        day = 21 + int(rng.integers(0, 9))
        cols = [str(10_000_000_000 + r)] + ([str(int(label[r]))] if labelled else [])
        cols.append(f"1410{day:02d}{hour[r]:02d}")
        cols += ["1005", str(int(rng.integers(0, 3))), f"s{site[r]:06x}"]
        cols += [f"v{int(rng.integers(0, 12)):x}" for _ in range(18)]
        lines.append(",".join(cols))
    return lines


def write_avazu(path: Path, n: int, seed: int = 0, labelled: bool = True) -> Path:
    return write_lines(path, avazu_rows(n, seed, labelled))
