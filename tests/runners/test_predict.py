"""recsys-predict: one score per input line in input order, malformed lines kept with their error,
unseen values on the OOV row, streaming in blocks, unlabelled Criteo and Avazu files (tabular
files with list columns: test_predict_lists.py; MovieLens: test_predict_movielens.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.encode import TabularEncoder, encode_blocks
from recsys_lab.data.preprocess.errors import BadRowsError, DataError
from recsys_lab.runners.common import load_trained
from recsys_lab.runners.evaluate import evaluate
from recsys_lab.runners.predict import predict
from tests.data.rawfiles import write_lines
from tests.runners.conftest import runner_config, train_tiny
from tests.runners.rawgen import avazu_rows, criteo_rows, write_avazu, write_criteo


@pytest.fixture(scope="module")
def criteo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("criteo")
    write_criteo(folder / "criteo.tsv", 2000, seed=0)
    data = ("data=criteo", f"data.path={folder / 'criteo.tsv'}", f"data.cache_dir={folder / 'cache'}")
    _, ckpt = train_tiny(folder, "model=dcnv2", *data, "data.min_count=2")
    return ckpt


@pytest.fixture(scope="module")
def avazu_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avazu")
    write_avazu(folder / "train.csv", 2000, seed=0)
    data = ("data=avazu", f"data.path={folder / 'train.csv'}", f"data.cache_dir={folder / 'cache'}")
    _, ckpt = train_tiny(folder, "model=dnn", *data, "data.min_count=1")
    return ckpt


def _predict(tmp_path, ckpt, lines_or_path, name="in.tsv", *overrides):
    path = (
        lines_or_path if not isinstance(lines_or_path, list) else write_lines(tmp_path / name, lines_or_path)
    )
    out = tmp_path / f"{path.stem}.parquet"
    predict(
        runner_config(
            "predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={path}", f"output={out}", *overrides
        )
    )
    return out


def test_every_line_is_kept_in_order_and_bad_ones_say_why(criteo_run, tmp_path):
    good = criteo_rows(60, seed=5)
    bad = {
        3: "1\tabc\t3",  # field_count
        10: "1\tabc" + good[10][good[10].index("\t", 2) :],  # non_numeric I1
        20: "2" + good[20][1:],  # bad_label
        30: "",  # an empty line: field_count
    }
    lines = list(good)
    for i in sorted(bad):
        lines.insert(i, bad[i])
    clean = pl.read_parquet(_predict(tmp_path, criteo_run, good, "clean.tsv"))
    with pytest.raises(BadRowsError, match=r"4 of 64 rows"):  # above the run's data.max_bad_fraction ...
        _predict(tmp_path, criteo_run, lines, "mixed.tsv")
    out = pl.read_parquet(tmp_path / "mixed.parquet")  # ... but only after writing every row
    assert out.columns == ["line", "score", "error"]
    assert out["line"].to_list() == list(range(1, 65))
    bad_lines = sorted(i + 1 for i in bad)
    assert out.filter(pl.col("score").is_null())["line"].to_list() == bad_lines
    reasons = out.filter(pl.col("error").is_not_null())["error"].to_list()
    assert [r.split(":")[0] for r in reasons] == ["field_count", "non_numeric", "bad_label", "field_count"]
    np.testing.assert_array_equal(
        out.filter(pl.col("error").is_null())["score"].to_numpy(), clean["score"].to_numpy()
    )
    report = json.loads((tmp_path / "mixed.report.json").read_text())
    assert report["rows"] == 64 and report["scored"] == 60
    assert report["bad_rows"]["by_reason"] == {
        "field_count": 2,
        "non_numeric": 1,
        "bad_label": 1,
        "bad_value": 0,
    }
    # Allowed explicitly, the same file passes.
    _predict(tmp_path, criteo_run, lines, "mixed.tsv", "max_bad_fraction=0.1")


def test_small_blocks_give_the_same_output(criteo_run, tmp_path):
    path = write_criteo(tmp_path / "unlabelled.tsv", 300, seed=7, labelled=False)
    one = _predict(tmp_path / "a", criteo_run, path)
    many = _predict(tmp_path / "b", criteo_run, path, "x", "block_bytes=2000", "batch_size=7")
    assert pq.ParquetFile(many).num_row_groups > 10
    a, b = pl.read_parquet(one), pl.read_parquet(many)
    assert a.height == 300 and a["score"].null_count() == 0
    assert a.drop("score").equals(b.drop("score"))
    # Other batch sizes may round the last float bits differently (other GEMM blockings).
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=0, atol=1e-6)


def test_unseen_values_take_the_oov_row_and_empty_ones_the_missing_row(criteo_run, tmp_path):
    data = load_trained(criteo_run).data
    vocab = pl.read_parquet(data.cache_path / "vocab.parquet").filter(pl.col("field") == "C3")
    line = criteo_rows(1, seed=9)[0].split("\t")
    line[14] = "deadbeef"  # C1: never seen in training
    line[15] = ""  # C2: empty
    line[16] = vocab["value"][-1]  # C3: seen in training
    path = write_lines(tmp_path / "x.tsv", ["\t".join(line)])
    encoder = TabularEncoder(data.spec(), data.cache_path)
    (block,) = list(encode_blocks(encoder, data.serving_source(path), BadRowReport("criteo")))
    sparse = block.rows.sparse[0]
    c1, c2, c3 = (data.schema.categorical_index(c) for c in ("C1", "C2", "C3"))
    assert sparse[c1] == 0 and sparse[c2] == 1
    assert sparse[c3] == vocab["id"][-1] > 1


def test_the_training_cache_is_found_after_the_raw_file_changed(criteo_run, tmp_path):
    """A touched (or moved) training file changes the cache key; the runners must still find the
    run's cache by its config and path, and must not preprocess anything again."""
    raw = criteo_run.parents[2] / "criteo.tsv"
    caches = raw.parent / "cache" / "criteo"
    before = sorted(p.name for p in caches.iterdir())
    stat = raw.stat()
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        run = load_trained(criteo_run)
        assert run.data.cache_path is not None and run.data.cache_path.name in before
        out = pl.read_parquet(_predict(tmp_path, criteo_run, criteo_rows(20, seed=8), "x.tsv"))
        assert out["score"].null_count() == 0
    finally:
        os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sorted(p.name for p in caches.iterdir()) == before


def test_avazu_test_file_without_labels_keeps_its_ids(avazu_run, tmp_path):
    lines = avazu_rows(50, seed=3, labelled=False)
    out = pl.read_parquet(_predict(tmp_path, avazu_run, lines, "test.csv"))
    assert out.columns == ["line", "id", "score", "error"]
    assert out["line"].to_list() == list(range(2, 52))  # line 1 is the header
    assert out["id"].to_list() == [row.split(",")[0] for row in lines[1:]]
    assert out["score"].null_count() == 0 and out["error"].null_count() == 50


def test_avazu_eval_on_a_new_file_has_gauc(avazu_run, tmp_path):
    path = write_avazu(tmp_path / "day.csv", 400, seed=4)
    m = evaluate(runner_config("eval", tmp_path, f"ckpt_path={avazu_run}", f"+data.path={path}"))
    assert m["eval/rows"] == "all" and m["eval/rows_read"] == 400
    assert 0 < m["test/gauc"] < 1


def test_a_run_on_synthetic_data_is_refused_clearly(tmp_path):
    _, ckpt = train_tiny(tmp_path / "syn", "model=dnn", "trainer.limit_train_batches=2", "test=false")
    with pytest.raises(DataError, match=r"reads raw rows in a training data.s format"):
        _predict(tmp_path, ckpt, ["1\t2"], "x.tsv")


@pytest.mark.usefixtures("hydra_ctx")
def test_predict_scores_the_tabular_sample_with_multi_valued_and_history_columns(tmp_path):
    from recsys_lab.runners.train import run
    from tests.conftest import compose_train
    from tests.data.rawfiles import TABULAR_SAMPLE

    trained = run(
        compose_train(
            tmp_path,
            "data=tabular_sample",
            "debug=tiny",
            "model=dnn",
            "logger=none",
            f"data.cache_dir={tmp_path / 'cache'}",
            "num_threads=1",
        )
    )
    cfg = OmegaConf.create(
        {
            "ckpt_path": trained["best_checkpoint"],
            "input": str(TABULAR_SAMPLE),
            "output": str(tmp_path / "s.parquet"),
            "num_threads": 1,
            "batch_size": 64,
            "block_bytes": 1 << 20,
            "max_bad_fraction": None,
        }
    )
    summary = predict(cfg)
    out = pl.read_parquet(tmp_path / "s.parquet")
    rows = len(TABULAR_SAMPLE.read_text().splitlines()) - 1
    assert summary["rows"] == summary["scored"] == rows == out.height
    assert out["line"].to_list() == list(range(2, rows + 2)) and out["score"].null_count() == 0
