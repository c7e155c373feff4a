"""data=criteo: the raw and CSV layouts of the generated sample, values, splits, day files, DCNv2 end to end."""

import math
import shutil

import numpy as np
import polars as pl
import pytest

from recsys_lab.data.criteo import CATEGORICAL, NUMERIC, CriteoDataModule
from recsys_lab.data.preprocess.errors import DataError, DatasetNotFoundError
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.runners.train import run
from tests.conftest import compose_train
from tests.data.rawfiles import criteo_labels, criteo_lines, sample_file, sample_lines, write_lines


def criteo(path, tmp_path, **kw) -> CriteoDataModule:
    kw = {"min_count": 1, "batch_size": 64, "eval_batch_size": 64, **kw}
    dm = CriteoDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


def all_rows(dm: CriteoDataModule) -> dict[str, np.ndarray]:
    """Every split's arrays concatenated, rows in original line order (via a line-order key)."""
    out = {}
    for name in ("sparse", "dense", "click"):
        out[name] = np.concatenate([np.asarray(dm.split_data(s).arrays[name]) for s in SPLITS])
    return out


def vocab_value(dm: CriteoDataModule, field: str, id_: int) -> str | None:
    """The raw value behind id ``id_`` of ``field`` (None for the reserved ids)."""
    vocab = pl.read_parquet(dm.cache_path / "vocab.parquet").filter(
        pl.col("field") == field, pl.col("id") == id_
    )
    return vocab.get_column("value").item() if vocab.height else None


def line_ids(dm: CriteoDataModule, line: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(sparse ids, dense values, click) of data line ``line`` (1-based) under split=time, fractions [1,0,0]."""
    arrays = dm.split_data("train").arrays
    return (
        np.asarray(arrays["sparse"][line - 1]),
        np.asarray(arrays["dense"][line - 1]),
        float(arrays["click"][line - 1]),
    )


@pytest.fixture
def raw_sample():
    return sample_file("criteo_raw")


def test_raw_sample_row_count_labels_and_named_rows(raw_sample, tmp_path):
    # split=time with all rows in train keeps the file order, so row i is data line i + 1.
    dm = criteo(raw_sample, tmp_path, split="time", split_fractions=[1.0, 0.0, 0.0])
    rows = all_rows(dm)
    labels = criteo_labels()  # the file's text, read independently of the reader
    assert sum(dm.manifest["rows"].values()) == len(labels) == 200 == len(rows["click"])
    assert int(rows["click"].sum()) == sum(labels) and 0 < sum(labels) < len(labels)
    np.testing.assert_array_equal(rows["click"], labels)
    assert dm.manifest["bad_rows"]["bad_rows"] == 0
    names = [f.name for f in dm.schema.features]
    assert (
        names == [*NUMERIC, *CATEGORICAL] and dm.schema.num_categorical == 39 and dm.schema.num_numeric == 0
    )

    lines = criteo_lines()
    for line in (1, 2, 117, 200):
        fields = lines[line - 1].split("\t")
        sparse, _, click = line_ids(dm, line)
        assert click == float(fields[0])
        for j, name in enumerate(names):
            raw = fields[1 + j]
            if raw == "":
                assert sparse[j] == 1, (line, name)  # missing
                continue
            if name.startswith("I"):  # log_squared: floor(ln(x)^2) for x > 2, else x
                x = int(raw)
                raw = str(math.floor(math.log(x) ** 2) if x > 2 else x)
            assert vocab_value(dm, name, int(sparse[j])) == raw, (line, name)
    # Line 1 by hand (planted by the generator): I2 = 3 -> floor(ln 3 ^ 2) = 1, I3 = 260 -> 30, C26 missing.
    sparse, _, _ = line_ids(dm, 1)
    assert vocab_value(dm, "I2", int(sparse[1])) == "1"
    assert vocab_value(dm, "I3", int(sparse[2])) == "30"
    assert vocab_value(dm, "C1", int(sparse[13])) == lines[0].split("\t")[14]
    assert sparse[38] == 1


def test_csv_export_and_gzip_give_the_same_arrays_as_the_raw_file(raw_sample, tmp_path):
    raw = all_rows(criteo(raw_sample, tmp_path / "a"))
    csv = all_rows(criteo(sample_file("criteo_csv"), tmp_path / "b"))
    gz = write_lines(tmp_path / "train.txt.gz", criteo_lines(), gz=True)
    gzipped = all_rows(criteo(gz.parent, tmp_path / "c"))  # a folder holding train.txt.gz
    for name in raw:
        np.testing.assert_array_equal(raw[name], csv[name], err_msg=name)
        np.testing.assert_array_equal(raw[name], gzipped[name], err_msg=name)


def test_dense_numeric_transforms(raw_sample, tmp_path):
    dm = criteo(raw_sample, tmp_path, numeric="log1p", split="time", split_fractions=[1.0, 0.0, 0.0])
    assert dm.schema.num_numeric == 13 and dm.schema.num_categorical == 26
    _, dense, _ = line_ids(dm, 1)  # planted: I2 = 3, I3 = 260, I1 missing -> 0
    assert dense[0] == 0.0
    assert dense[1] == pytest.approx(math.log1p(3), rel=1e-6)
    assert dense[2] == pytest.approx(math.log1p(260), rel=1e-6)
    _, dense, _ = line_ids(dm, 2)  # planted: I2 = -1 -> log1p(max(x, 0)) = 0
    assert dense[1] == 0.0

    std = criteo(
        raw_sample, tmp_path / "s", numeric="log_standardize", split="time", split_fractions=[1.0, 0.0, 0.0]
    )
    x = np.asarray(std.split_data("train").arrays["dense"])
    present = x != 0
    assert np.abs(x[present].mean()) < 0.2 and abs(x[:, 2][x[:, 2] != 0].std() - 1) < 0.1

    q = criteo(raw_sample, tmp_path / "q", numeric="quantile", num_quantiles=4)
    assert q.schema.num_numeric == 0 and q.schema.num_categorical == 39
    assert all(f.vocab_size <= 3 + 3 for f in q.schema.categorical[:13])  # missing + OOV + <= 4 buckets


def test_hash_buckets_bound_the_vocabularies(raw_sample, tmp_path):
    dm = criteo(raw_sample, tmp_path, hash_buckets=16)
    sizes = dict(zip([f.name for f in dm.schema.categorical], dm.schema.vocab_sizes))
    assert all(sizes[c] <= 2 + 16 for c in CATEGORICAL) and max(sizes[c] for c in CATEGORICAL) > 10
    exact = criteo(raw_sample, tmp_path / "exact")
    assert sizes["I5"] == exact.schema["I5"].vocab_size  # numeric buckets are not hashed
    assert dm.cache_path.name != exact.cache_path.name
    vocab = pl.read_parquet(dm.cache_path / "vocab.parquet").filter(pl.col("field") == "C3")
    assert all(0 <= int(v) < 16 for v in vocab.get_column("value"))
    again = criteo(raw_sample, tmp_path / "again", hash_buckets=16)
    np.testing.assert_array_equal(all_rows(dm)["sparse"], all_rows(again)["sparse"])


def test_time_split_of_one_file_keeps_order_and_exact_sizes(raw_sample, tmp_path):
    dm = criteo(raw_sample, tmp_path, split="time")
    assert dm.manifest["rows"] == {"train": 160, "val": 20, "test": 20}
    clicks = [int(np.asarray(dm.split_data(s).arrays["click"]).sum()) for s in SPLITS]
    labels = criteo_labels()
    assert clicks == [sum(labels[:160]), sum(labels[160:180]), sum(labels[180:])]


def test_random_split_is_seeded(raw_sample, tmp_path):
    a = criteo(raw_sample, tmp_path / "a").manifest["rows"]
    b = criteo(raw_sample, tmp_path / "b").manifest["rows"]
    c = criteo(raw_sample, tmp_path / "c", split_seed=7).manifest["rows"]
    assert a == b and sum(a.values()) == len(criteo_lines())
    assert a != c
    assert 140 <= a["train"] <= 180


def test_day_files_time_split_halves_the_last_day(tmp_path):
    lines = criteo_lines()
    folder = tmp_path / "criteo_1tb"
    write_lines(folder / "day_0", lines[:80])
    write_lines(folder / "day_1.gz", lines[80:140], gz=True)
    write_lines(folder / "day_2", lines[140:])
    (folder / "README").write_text("not data")
    dm = criteo(folder, tmp_path, split="time")
    assert dm.manifest["rows"] == {"train": 140, "val": 30, "test": 30}
    clicks = [int(np.asarray(dm.split_data(s).arrays["click"]).sum()) for s in SPLITS]
    labels = criteo_labels()
    assert clicks == [sum(labels[:140]), sum(labels[140:170]), sum(labels[170:])]
    capped = criteo(folder, tmp_path / "capped", split="time", max_rows_per_file=20)
    assert capped.manifest["rows"] == {"train": 40, "val": 10, "test": 10}


def test_bars_pre_split_files(tmp_path):
    csv = sample_lines("criteo_csv")
    header, rows = csv[0].replace("label", "Label"), csv[1:]  # BARS spells it Label
    folder = tmp_path / "Criteo_x4"
    write_lines(folder / "train.csv", [header, *rows[:150]])
    write_lines(folder / "valid.csv", [header, *rows[150:175]])
    write_lines(folder / "test.csv", [header, *rows[175:]])
    dm = criteo(folder, tmp_path, split="files")
    assert dm.manifest["rows"] == {"train": 150, "val": 25, "test": 25}


def test_missing_files_and_wrong_layouts_say_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"train\.txt.*day_0.*criteo"):
        criteo(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"train\.txt"):
        criteo(tmp_path / "empty_dir", tmp_path)
    test_txt = write_lines(
        tmp_path / "test.txt", ["\t".join(line.split("\t")[1:]) for line in criteo_lines()[:5]]
    )
    with pytest.raises(DataError, match=r"unlabelled Kaggle test\.txt"):
        criteo(test_txt, tmp_path)
    bad_header = write_lines(tmp_path / "other.csv", ["a,b,c", "1,2,3"])
    with pytest.raises(DataError, match="lacks"):
        criteo(bad_header, tmp_path)


def test_dcnv2_trains_from_the_cli_on_both_layouts(raw_sample, tmp_path, hydra_ctx):
    for name, path, mode in (
        ("raw", raw_sample, "tiny"),
        ("csv", sample_file("criteo_csv"), "fast_dev_run"),
    ):
        cfg = compose_train(
            tmp_path / name, "data=criteo_x4", f"data.path={path}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.min_count=1", f"debug={mode}", "logger=none",
        )  # fmt: skip
        m = run(cfg)
        assert m["data"] == "criteo" and m["model"] == "DCNv2"
        assert 0 <= m["test/auc"] <= 1 and math.isfinite(m["test/logloss"])
        assert math.isnan(m["test/gauc"])  # Criteo has no user id
    caches = [p for p in (tmp_path / "cache" / "criteo").iterdir() if not p.name.startswith(".")]
    assert len(caches) == 2  # one per layout (and debug size)


def test_criteo_cache_survives_moving_its_folder(raw_sample, tmp_path):
    dm = criteo(raw_sample, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "cache", moved)
    again = CriteoDataModule(path=str(raw_sample), cache_dir=str(moved), min_count=1)
    again.setup()
    assert again.cache_path == moved / "criteo" / dm.cache_path.name
