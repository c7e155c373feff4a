"""recsys_lab.data.samples: the generated Criteo/Avazu files are deterministic, in the real layouts,
and have the properties the real-data tests rely on."""

import re
from collections import Counter
from datetime import datetime

import pytest

from recsys_lab.data import samples
from recsys_lab.data.avazu import ANONYMOUS
from recsys_lab.data.criteo import CATEGORICAL, NUMERIC

HEX8 = re.compile(r"[0-9a-f]{8}")


def test_same_arguments_give_the_same_bytes(tmp_path):
    for layout in samples.LAYOUTS:
        a = samples.write_sample(layout, tmp_path / "a" / layout).read_bytes()
        assert a == samples.write_sample(layout, tmp_path / "b" / layout).read_bytes(), layout
        assert a != samples.write_sample(layout, tmp_path / "c" / layout, seed=1).read_bytes(), layout
        more = samples.write_sample(layout, tmp_path / "d" / layout, rows=300).read_text().splitlines()
        assert len(more) == 300 + (layout != "criteo_raw"), layout  # + the header
    assert not list(tmp_path.rglob("*.partial"))


def test_criteo_raw_and_csv_layouts():
    raw = [line.split("\t") for line in samples.criteo_raw_lines()]
    header, *csv = (line.split(",") for line in samples.criteo_csv_lines())
    assert header == ["label", *NUMERIC, *CATEGORICAL] and len(raw) == len(csv) == 200
    assert all(len(fields) == 40 for fields in raw + csv)
    for r, c in zip(raw, csv):  # the same rows; integers but I2 written as floats in the CSV
        ints = [x if x == "" or j == 1 else f"{x}.0" for j, x in enumerate(r[1:14])]
        assert c == [r[0], *ints, *r[14:]]
    assert "." not in "".join(c[2] for c in csv) and "260.0" in csv[0]
    # Planted rows: line 1 has I1 missing, I2 = 3, I3 = 260, C19/C20/C25/C26 missing; line 2 I2 = -1.
    assert raw[0][1:4] == ["", "3", "260"] and [raw[0][14 + k] for k in (18, 19, 24, 25)] == [""] * 4
    assert raw[1][2] == "-1"
    labels = [int(r[0]) for r in raw]
    assert set(labels) == {0, 1} and 0.15 <= sum(labels) / len(labels) <= 0.35
    columns = list(zip(*raw))
    i2 = [int(x) for x in columns[2]]
    assert "" not in columns[2] and min(i2) < 0 and max(i2) > 100
    assert all("" in columns[j] for j in (1, 3, 4, 6, 10, 12, 13))  # missing integers
    assert all(int(x) >= 0 for j in range(3, 14) for x in columns[j] if x)
    for j in range(14, 40):
        values = [x for x in columns[j] if x]
        assert all(HEX8.fullmatch(x) for x in values), CATEGORICAL[j - 14]
    counts = [Counter(x for x in columns[j] if x) for j in range(14, 40)]
    assert all(max(c.values()) >= 2 for c in counts)  # every field repeats a value ...
    assert sum(1 in c.values() for c in counts) >= 10  # ... and most have values seen once (min_count)
    assert sum("" in columns[j] for j in range(14, 40)) >= 8  # missing categoricals


def test_avazu_layout():
    header, *rows = (line.split(",") for line in samples.avazu_lines())
    assert header == ["id", "click", "hour", *ANONYMOUS] and len(rows) == 200
    assert all(len(fields) == len(header) for fields in rows)
    col = {name: [fields[j] for fields in rows] for j, name in enumerate(header)}
    ids = [int(x) for x in col["id"]]
    assert len(set(ids)) == len(ids) and all(0 <= x < 2**64 for x in ids) and max(ids) >= 2**63
    hours = [datetime.strptime(h, "%y%m%d%H") for h in col["hour"]]
    assert (
        hours == sorted(hours) and len({h.date() for h in hours}) == 6 and len({h.hour for h in hours}) > 12
    )
    assert {h.weekday() for h in hours} >= {5, 6}  # a weekend (Avazu_x4's `weekend` feature)
    clicks = [int(x) for x in col["click"]]
    assert set(clicks) == {0, 1} and 0.1 <= sum(clicks) / len(clicks) <= 0.3
    devices = Counter(col["device_id"])
    assert devices.most_common(1)[0][0] == samples.ANONYMOUS_DEVICE
    assert sum(n >= 2 for d, n in devices.items() if d != samples.ANONYMOUS_DEVICE) >= 10  # GAUC groups
    assert "-1" in col["C20"] and all(HEX8.fullmatch(x) for x in col["site_id"] + col["device_ip"])


def test_command_line_and_errors(tmp_path, capsys):
    out = tmp_path / "sub" / "avazu.csv"
    samples.main(["avazu", str(out), "--rows", "50", "--seed", "3"])
    assert out.read_text().splitlines() == samples.avazu_lines(50, 3)
    assert f"wrote 50 avazu rows to {out}" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"Unknown sample layout 'kdd'.*criteo_raw, criteo_csv, avazu"):
        samples.write_sample("kdd", tmp_path / "x")
    with pytest.raises(ValueError, match="at least 2 rows"):
        samples.criteo_raw_lines(rows=1)
