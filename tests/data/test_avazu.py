"""data=avazu: the generated sample's rows, derived time features, user groups, splits, DCNv2 end to end."""

import math
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from recsys_lab.data.avazu import ANONYMOUS, AvazuDataModule
from recsys_lab.data.preprocess.errors import DataError, DatasetNotFoundError
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.runners.train import run
from tests.conftest import compose_train
from tests.data.rawfiles import sample_file, sample_lines, write_lines


def avazu(path, tmp_path, **kw) -> AvazuDataModule:
    kw = {"min_count": 1, "batch_size": 32, "eval_batch_size": 32, **kw}
    dm = AvazuDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


def with_hours(hours: list[int]) -> list[str]:
    """The sample's header and rows with the ``hour`` column replaced (rows repeat as needed)."""
    header, *rows = sample_lines("avazu")
    out = [header]
    for i, h in enumerate(hours):
        fields = rows[i % len(rows)].split(",")
        fields[2] = str(h)
        out.append(",".join(fields))
    return out


def vocab(dm, field: str) -> dict[int, str]:
    v = pl.read_parquet(dm.cache_path / "vocab.parquet").filter(pl.col("field") == field)
    return dict(zip(v.get_column("id").to_list(), v.get_column("value").to_list()))


def test_sample_rows_labels_features_and_users(tmp_path):
    dm = avazu(sample_file("avazu"), tmp_path, split="time", split_fractions=[1.0, 0.0, 0.0])
    a = dm.split_data("train").arrays
    header, *lines = (line.split(",") for line in sample_lines("avazu"))
    column = {name: [fields[j] for fields in lines] for j, name in enumerate(header)}
    clicks = [int(c) for c in column["click"]]  # the file's text, read independently of the reader
    assert dm.manifest["rows"]["train"] == len(lines) == 200
    assert int(np.asarray(a["click"]).sum()) == sum(clicks) and 0 < sum(clicks) < len(lines)
    names = [f.name for f in dm.schema.features]
    assert names == ["hour", "weekday", *ANONYMOUS] and "id" not in names
    assert dm.schema.user_feature().name == "device_id"
    sparse = np.asarray(a["sparse"])
    # Row by row (file order): hour of day and weekday (Monday = 0) of the YYMMDDHH hour.
    times = [datetime.strptime(h, "%y%m%d%H") for h in column["hour"]]
    assert [vocab(dm, "hour")[i] for i in sparse[:, 0]] == [str(t.hour) for t in times]
    assert [vocab(dm, "weekday")[i] for i in sparse[:, 1]] == [str(t.weekday()) for t in times]
    assert len({t.date() for t in times}) > 1 and len({t.hour for t in times}) > 1
    for row in (0, 1, len(lines) - 1):
        for j, name in enumerate(ANONYMOUS):
            assert vocab(dm, name)[int(sparse[row, 2 + j])] == column[name][row], (row, name)
    # GAUC groups: one id per distinct device_id; the anonymous a99f214a is the most frequent.
    user = np.asarray(a["user"])
    device = column["device_id"]
    assert len(set(user.tolist())) == len(set(device)) > 10
    anonymous = [i for i, d in enumerate(device) if d == "a99f214a"]
    assert max(set(device), key=device.count) == "a99f214a"
    assert (user == user[anonymous[0]]).sum() == len(anonymous)


def test_time_features_and_bad_hours(tmp_path):
    hours = [14102100, 14102223, 14102512, 14102612] * 10 + [14103099, 14023001]  # bad: hour 99, 30 February
    path = write_lines(tmp_path / "train.csv", with_hours(hours))
    dm = avazu(path, tmp_path, time_features=["hour", "weekday", "weekend"], max_bad_fraction=0.1)
    assert dm.manifest["bad_rows"]["by_reason"]["bad_value"] == 2
    assert [f.name for f in dm.schema.features][:3] == ["hour", "weekday", "weekend"]
    weekdays = set()
    for s in SPLITS:
        sp = np.asarray(dm.split_data(s).arrays["sparse"])
        weekdays |= {vocab(dm, "weekday")[i] for i in sp[:, 1]}
    assert weekdays == {"1", "2", "5", "6"}  # Tue 21, Wed 22, Sat 25, Sun 26 October 2014


def test_time_split_by_hour_boundaries(tmp_path):
    hours = [14102100 + 100 * d + h for d in range(10) for h in (0, 12)]  # 21..30 October, 2 rows a day
    path = write_lines(tmp_path / "train", with_hours(hours))
    dm = avazu(path, tmp_path, split="time", split_time_boundaries=[14102900, 14103000])
    assert dm.manifest["rows"] == {"train": 16, "val": 2, "test": 2}
    by_order = avazu(path, tmp_path / "b", split="time", split_fractions=[0.5, 0.25, 0.25])
    assert by_order.manifest["rows"] == {"train": 10, "val": 5, "test": 5}


def test_missing_and_unlabelled_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="avazu-ctr-prediction"):
        avazu(tmp_path / "nowhere", tmp_path)
    header, *rows = sample_lines("avazu")
    cols = header.split(",")
    drop = cols.index("click")
    unlabelled = [",".join(f for i, f in enumerate(line.split(",")) if i != drop) for line in [header, *rows]]
    with pytest.raises(DataError, match="no click column"):
        avazu(write_lines(tmp_path / "test", unlabelled), tmp_path)


def test_dcnv2_trains_from_the_cli(tmp_path, hydra_ctx):
    cfg = compose_train(
        tmp_path, "data=avazu_x4", f"data.path={sample_file('avazu')}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.min_count=1", "debug=tiny", "logger=none",
    )  # fmt: skip
    m = run(cfg)
    assert m["data"] == "avazu" and 0 <= m["test/auc"] <= 1 and math.isfinite(m["test/logloss"])
