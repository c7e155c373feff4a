"""data=tabular: CSV, TSV, parquet, folders and pre-split files; every column kind; bad rows; OOV;
time split; several labels; a multi-task model end to end on the sample that ships in the repo."""

import json

import numpy as np
import polars as pl
import pytest

from recsys_lab.data.preprocess.errors import BadRowsError, DataError
from recsys_lab.data.preprocess.vocab import MISSING_ID, OOV_ID
from recsys_lab.data.schema import FeatureKind, FeatureRole
from recsys_lab.data.tabular import TabularFileDataModule
from recsys_lab.runners.train import run
from tests.conftest import compose_train
from tests.data.rawfiles import TABULAR_SAMPLE, write_lines

HEADER = ("ts", "user", "ad", "price", "tags", "hist_ad", "hist_ts", "click", "buy")
COLUMNS = {
    "labels": {"click": "click", "conversion": "buy"},
    "categorical": ["user", "ad"],
    "numeric_columns": ["price"],
    "multi_valued": {"tags": {"separator": "|", "max_len": 2}},
    "history": ["hist_ad"],
    "history_timestamps": "hist_ts",
    "user": "user",
    "item": "ad",
    "time": "ts",
}


def make_rows(n: int = 30) -> list[dict[str, str]]:
    """``n`` rows in time order: users u0..u2, ads a0..a4 (a4 only in the last row), tags from
    {x, y, z} (row 0 three tags, every fifth row none), histories of the user's earlier ads."""
    rows, history = [], {f"u{u}": [] for u in range(3)}
    for i in range(n):
        user, ad = f"u{i % 3}", "a4" if i == n - 1 else f"a{i % 4}"
        tags = "" if i % 5 == 4 else ("x|y|z" if i == 0 else ("x" if i % 2 else "y|z"))
        past = history[user][-3:]
        click = int(i % 3 != 1)
        rows.append(
            {
                "ts": str(1000 + 10 * i),
                "user": user,
                "ad": ad,
                "price": f"{1.5 * (i % 7):.1f}",
                "tags": tags,
                "hist_ad": "|".join(a for a, _ in past),
                "hist_ts": "|".join(str(t) for _, t in past),
                "click": str(click),
                "buy": str(int(click and i % 2 == 0)),
            }
        )
        history[user].append((ad, 1000 + 10 * i))
    return rows


def write_table(path, rows, sep=",", header=HEADER):
    lines = [sep.join(header)] + [sep.join(r[c] for c in header) for r in rows]
    return write_lines(path, lines)


def tabular(path, tmp_path, **kw) -> TabularFileDataModule:
    kw = {**COLUMNS, "batch_size": 8, "eval_batch_size": 64, **kw}
    dm = TabularFileDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


def train_batch(dm):
    """Every training row as one Batch, rows in file order (split=random with fractions [1, 0, 0])."""
    split = dm.split_data("train")
    return split.batch(np.arange(len(split)))


def vocab(dm, field) -> dict[str, int]:
    frame = pl.read_parquet(dm.cache_path / "vocab.parquet").filter(pl.col("field") == field)
    return dict(zip(frame.get_column("value").to_list(), frame.get_column("id").to_list()))


ALL_TRAIN = {"split_fractions": [1.0, 0.0, 0.0]}


def test_csv_every_column_kind(tmp_path):
    rows = make_rows()
    dm = tabular(write_table(tmp_path / "log.csv", rows), tmp_path, **ALL_TRAIN)
    s = dm.schema
    kinds = {f.name: f.kind for f in s.features}
    assert kinds == {
        "user": FeatureKind.CATEGORICAL,
        "ad": FeatureKind.CATEGORICAL,
        "price": FeatureKind.NUMERIC,
        "tags": FeatureKind.MULTI_VALUED,
        "hist_ad": FeatureKind.SEQUENCE,
    }
    assert s.labels == ("click", "conversion")
    assert s["user"].role is FeatureRole.USER and s["ad"].role is FeatureRole.ITEM
    assert s["hist_ad"].vocab_size == s["ad"].vocab_size  # hist_<c> shares <c>'s ids
    b = train_batch(dm)
    ads, tags = vocab(dm, "ad"), vocab(dm, "tags")
    assert b.sparse[:, 1].tolist() == [ads[r["ad"]] for r in rows]
    assert b.labels["click"].tolist() == [float(r["click"]) for r in rows]
    assert b.labels["conversion"].tolist() == [float(r["buy"]) for r in rows]
    # numeric: log_standardize of sign(x) ln(1 + |x|)
    x = np.log1p(np.array([float(r["price"]) for r in rows]))
    np.testing.assert_allclose(b.dense[:, 0].numpy(), (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-5)
    # multi-valued: the first max_len=2 values, -1 padding, an empty set is the missing id
    assert b.multi.shape == (30, 1, 2)
    assert b.multi[0, 0].tolist() == [tags["x"], tags["y"]]
    assert b.multi[1, 0].tolist() == [tags["x"], -1]
    assert b.multi[4, 0].tolist() == [MISSING_ID, -1]
    # history: each row's earlier ads of the same user, oldest first, with their times
    h = b.history
    for i in (0, 3, 9, 29):
        lo, hi = int(h.offsets[i]), int(h.offsets[i + 1])
        want = [a for a in rows[i]["hist_ad"].split("|") if a]
        assert h.values[lo:hi, 0].tolist() == [ads[a] for a in want]
        assert h.timestamps[lo:hi].tolist() == [int(t) for t in rows[i]["hist_ts"].split("|") if t]
    assert h.lengths()[:4].tolist() == [0, 0, 0, 1]
    # GAUC groups: one id per user
    assert len(set(b.user.tolist())) == 3


def test_tsv_and_parquet_give_the_csv_arrays(tmp_path):
    rows = make_rows()
    csv = tabular(write_table(tmp_path / "a" / "log.csv", rows), tmp_path / "a", **ALL_TRAIN)
    tsv = tabular(write_table(tmp_path / "b" / "log.tsv", rows, sep="\t"), tmp_path / "b", **ALL_TRAIN)
    frame = pl.DataFrame(rows).with_columns(
        pl.col("ts").cast(pl.Int64),
        pl.col("price").cast(pl.Float64),
        pl.col("click").cast(pl.Int8),
        pl.col("buy").cast(pl.Int8),
        pl.col("tags")
        .str.split("|")
        .list.eval(pl.element().filter(pl.element() != "")),  # a native list column
    )
    (tmp_path / "c").mkdir()
    frame.write_parquet(tmp_path / "c" / "log.parquet")
    pq = tabular(tmp_path / "c" / "log.parquet", tmp_path / "c", **ALL_TRAIN)
    want = train_batch(csv)
    for dm in (tsv, pq):
        got = train_batch(dm)
        for name in ("sparse", "dense", "multi", "user"):
            assert np.array_equal(getattr(got, name).numpy(), getattr(want, name).numpy()), name
        assert all(np.array_equal(got.labels[k], want.labels[k]) for k in want.labels)
        assert np.array_equal(got.history.values, want.history.values)
        assert np.array_equal(got.history.offsets, want.history.offsets)


def test_folder_of_files_and_explicit_split_files(tmp_path):
    rows = make_rows(30)
    folder = tmp_path / "parts"
    write_table(folder / "part-0.csv", rows[:12])
    write_table(folder / "part-1.csv", rows[12:])
    dm = tabular(folder, tmp_path / "x", **ALL_TRAIN)
    assert dm.manifest["rows"]["train"] == 30
    pre = tmp_path / "pre"
    write_table(pre / "train.csv", rows[:20])
    write_table(pre / "valid.csv", rows[20:25])
    write_table(pre / "test.csv", rows[25:])
    dm = tabular(pre, tmp_path / "y", split="files")
    assert dm.manifest["rows"] == {"train": 20, "val": 5, "test": 5}
    # a4 appears in the test file only: out of vocabulary
    test = dm.split_data("test")
    assert test.batch(np.arange(5)).sparse[-1, 1].item() == OOV_ID
    with pytest.raises(DataError, match="train"):
        tabular(folder, tmp_path / "z", split="files")


def test_oov_min_count_and_missing(tmp_path):
    rows = make_rows()
    rows[7]["user"] = ""  # missing
    rows[8]["tags"] = "x|never"  # 'never' appears once
    dm = tabular(write_table(tmp_path / "log.csv", rows), tmp_path, min_count=2, **ALL_TRAIN)
    b = train_batch(dm)
    assert b.sparse[7, 0].item() == MISSING_ID
    assert b.sparse[29, 1].item() == OOV_ID  # a4: seen once < min_count
    tags = vocab(dm, "tags")
    assert "never" not in tags and b.multi[8, 0].tolist() == [tags["x"], OOV_ID]


def test_bad_rows_are_counted_by_reason(tmp_path):
    rows = make_rows()
    rows[3]["click"] = "2"
    rows[5]["price"] = "cheap"
    rows[6]["ts"] = "yesterday"
    rows[9]["hist_ts"] = "1"  # one time for two history events
    path = write_table(tmp_path / "log.csv", rows)
    lines = path.read_text().splitlines()
    lines[12] += ",extra"  # row 11 (line 13): one field too many
    write_lines(path, lines)
    with pytest.raises(BadRowsError, match="malformed"):
        tabular(path, tmp_path)
    dm = tabular(path, tmp_path, max_bad_fraction=0.5, **ALL_TRAIN)
    bad = json.loads((dm.cache_path / "bad_rows.json").read_text())
    assert bad["by_reason"] == {"field_count": 1, "non_numeric": 1, "bad_label": 1, "bad_value": 2}
    assert dm.manifest["rows"]["train"] == 25
    assert sorted(e["line"] for e in bad["examples"]) == [5, 7, 8, 11, 13]


def test_time_split_by_quantiles_and_by_boundaries(tmp_path):
    rows = make_rows(40)
    for i, r in enumerate(rows):
        r["rid"] = str(i)  # identifies the row (its time is 1000 + 10 i)
    order = np.random.default_rng(0).permutation(40)
    shuffled = [dict(rows[i]) for i in order]  # the time split must not rely on file order
    for r in shuffled[::4]:  # ISO date-times and epoch seconds may be mixed
        t = int(r["ts"])
        r["ts"] = f"1970-01-01T00:{t // 60:02d}:{t % 60:02d}"
    path = write_table(tmp_path / "log.csv", shuffled, header=(*HEADER, "rid"))
    cats = {"numeric_columns": ["price", "rid"], "numeric": "log1p"}  # rid = exp(x) - 1
    dm = tabular(path, tmp_path / "a", split="time", split_fractions=[0.5, 0.25, 0.25], **cats)

    def times(split):
        data = dm.split_data(split)
        rid = np.rint(np.expm1(data.batch(np.arange(len(data))).dense[:, 1].numpy().astype(np.float64)))
        return sorted(1000 + 10 * int(i) for i in rid)

    t = {s: times(s) for s in ("train", "val", "test")}
    assert max(t["train"]) < min(t["val"]) and max(t["val"]) < min(t["test"])
    assert [len(t[s]) for s in ("train", "val", "test")] == [20, 10, 10]
    dm = tabular(path, tmp_path / "b", split="time", split_time_boundaries=[1100, 1300], **cats)
    assert dm.manifest["rows"] == {"train": 10, "val": 20, "test": 10}
    with pytest.raises(ValueError, match=r"data\.time"):
        TabularFileDataModule(
            path=str(path), cache_dir=str(tmp_path), **{**COLUMNS, "time": None}, split="time"
        )


def test_history_newest_first_and_max_history(tmp_path):
    rows = make_rows()
    for r in rows:
        r["hist_ad"] = "|".join(reversed(r["hist_ad"].split("|")))
        r["hist_ts"] = "|".join(reversed(r["hist_ts"].split("|")))
    newest = tabular(
        write_table(tmp_path / "n.csv", rows), tmp_path / "n", history_order="newest_first", **ALL_TRAIN
    )
    oldest = tabular(write_table(tmp_path / "o.csv", make_rows()), tmp_path / "o", **ALL_TRAIN)
    a, b = train_batch(newest).history, train_batch(oldest).history
    assert np.array_equal(a.values, b.values) and np.array_equal(a.timestamps, b.timestamps)
    short = tabular(write_table(tmp_path / "s.csv", make_rows()), tmp_path / "s", max_history=2, **ALL_TRAIN)
    h = train_batch(short).history
    assert int(h.lengths().max()) == 2
    i = 9  # three earlier events: the two most recent are kept
    assert (
        h.timestamps[int(h.offsets[i]) : int(h.offsets[i + 1])].tolist()
        == [int(t) for t in make_rows()[i]["hist_ts"].split("|")][-2:]
    )


def test_config_errors_say_what_to_fix(tmp_path):
    path = write_table(tmp_path / "log.csv", make_rows())
    with pytest.raises(DataError, match=r"\['clicks'\]"):
        tabular(path, tmp_path, labels={"click": "clicks"})
    with pytest.raises(ValueError, match="named click"):
        tabular(path, tmp_path, labels={"buy": "buy"})
    with pytest.raises(ValueError, match="more than once"):
        tabular(path, tmp_path, numeric_columns=["price", "user"])
    with pytest.raises(ValueError, match="unknown keys"):
        tabular(path, tmp_path, multi_valued={"tags": {"sep": "|"}})


def test_the_cache_is_reused(tmp_path):
    path = write_table(tmp_path / "log.csv", make_rows())
    first = tabular(path, tmp_path)
    again = tabular(path, tmp_path)
    assert again.cache_path == first.cache_path
    other = tabular(path, tmp_path, multi_valued={"tags": {"max_len": 3}})
    assert other.cache_path != first.cache_path


@pytest.mark.usefixtures("hydra_ctx")
def test_mmoe_end_to_end_on_the_shipped_sample_writes_per_label_metrics(tmp_path):
    """``python -m recsys_lab.train data=tabular_sample model=mmoe`` (data=tabular on
    examples/tabular/ads_sample.csv)."""
    cfg = compose_train(
        tmp_path,
        "data=tabular_sample",
        "model=mmoe",
        f"data.path={TABULAR_SAMPLE}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=64",
        "trainer.max_epochs=2",
        "logger=none",
        "callbacks.rich_progress_bar=null",
        "num_threads=1",
        "print_table=false",
    )
    m = run(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for label in ("click", "conversion"):
        for key in ("auc", "logloss", "gauc", "ne", "calibration"):
            assert f"test/{label}/{key}" in on_disk and f"val/{label}/{key}" in on_disk
    assert on_disk["test/auc"] == on_disk["test/click/auc"] != on_disk["test/conversion/auc"]
    assert 0.0 < on_disk["test/conversion/auc"] < 1.0 and m["model"] == "MMoE"


def test_hashing_and_quantile_buckets_keep_histories_aligned_with_the_candidate(tmp_path):
    rows = make_rows()
    path = write_table(tmp_path / "log.csv", rows)
    dm = tabular(path, tmp_path, hash_buckets=1000, numeric="quantile", num_quantiles=4, **ALL_TRAIN)
    assert dm.schema["price"].kind is FeatureKind.CATEGORICAL  # quantile buckets
    b = train_batch(dm)
    ad = {r["ad"]: int(i) for r, i in zip(rows, b.sparse[:, 1])}
    h = b.history
    lo, hi = int(h.offsets[9]), int(h.offsets[10])
    assert h.values[lo:hi, 0].tolist() == [ad[a] for a in rows[9]["hist_ad"].split("|")]
