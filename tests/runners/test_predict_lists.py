"""recsys-predict and recsys-eval on data=tabular files with multi-valued and history columns:
encoded exactly as the training cache holds the same rows (ids, -1 padding, events oldest first,
the latest max_history), scores equal to the model's on the cached batches, malformed rows kept
with their reason, unseen values on the OOV row."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.encode import TabularEncoder, encode_blocks
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.data.tabular import TabularFileDataModule
from recsys_lab.runners.common import load_trained
from recsys_lab.runners.evaluate import evaluate
from tests.data.rawfiles import write_lines
from tests.runners.conftest import runner_config, train_tiny
from tests.runners.scoring import cached_scores, predict_table

HEADER = "user_id,ad_id,category,price,tags,hist_ad_id,hist_category,hist_time,click"
COLUMNS = {
    "categorical": ["user_id", "ad_id", "category"],
    "numeric_columns": ["price"],
    "multi_valued": {"tags": {"separator": ";", "max_len": 3}},
    "history": ["hist_ad_id", "hist_category"],
    "history_timestamps": "hist_time",
    "user": "user_id",
    "item": "ad_id",
}


def list_rows(n: int, seed: int = 0, ads: int = 30) -> list[str]:
    """A header and ``n`` CSV rows: a tag set (``;``-joined, 0..5 tags, spaces and empty values
    planted, rare tags) and a history of 0..7 events written newest first; clicks follow the ad and whether
    the history holds the ad's category."""
    rng = np.random.default_rng(seed)
    lines = [HEADER]
    for _ in range(n):
        ad = int(rng.integers(0, ads))
        cat = ad % 6
        tags = [f"t{int(t)}" for t in rng.integers(0, 12, int(rng.integers(0, 6)))]
        if tags and rng.random() < 0.2:
            tags[0] = f" {tags[0]} "  # stripped, as in training
        if rng.random() < 0.1:
            tags.append("")  # an empty value: dropped
        if rng.random() < 0.1:
            tags.insert(0, f"rare{int(rng.integers(0, 10**6))}")  # below min_count: OOV
        k = int(rng.integers(0, 8))
        hist = rng.integers(0, ads, k)
        times = np.sort(rng.integers(1_000, 9_000, k))[::-1]  # newest first
        seen = cat in {int(h) % 6 for h in hist}
        click = rng.random() < 1 / (1 + np.exp(-((ad - ads / 2) / 8 + 1.5 * seen - 0.5)))
        lines.append(
            ",".join(
                [
                    f"u{int(rng.integers(0, 25))}",
                    f"a{ad}",
                    f"c{cat}",
                    f"{rng.gamma(2.0, 10.0):.2f}",
                    ";".join(tags),
                    "|".join(f"a{int(h)}" for h in hist),
                    "|".join(f"c{int(h) % 6}" for h in hist),
                    "|".join(str(int(t)) for t in times),
                    str(int(click)),
                ]
            )
        )
    return lines


def _overrides(folder) -> list[str]:
    return [
        "data=tabular",
        f"data.path={folder}",
        f"data.cache_dir={folder.parent / 'cache'}",
        "data.categorical=[user_id,ad_id,category]",
        "data.numeric_columns=[price]",
        "+data.multi_valued.tags={separator: ';', max_len: 3}",
        "data.history=[hist_ad_id,hist_category]",
        "data.history_timestamps=hist_time",
        "data.history_order=newest_first",
        "data.max_history=4",
        "data.user=user_id",
        "data.item=ad_id",
        "data.split=files",
        "data.batch_size=64",
        "data.eval_batch_size=64",
    ]


@pytest.fixture(scope="module")
def list_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lists") / "data"
    for name, n, seed in (("train", 600, 0), ("valid", 150, 1), ("test", 150, 2)):
        write_lines(folder / f"{name}.csv", list_rows(n, seed))
    _, ckpt = train_tiny(folder.parent, "model=din", *_overrides(folder))
    return ckpt, folder


@pytest.mark.parametrize("hash_buckets", [None, 7])
def test_encoding_list_columns_reproduces_the_cache(tmp_path, hash_buckets):
    path = write_lines(tmp_path / "d.csv", list_rows(900, seed=3))
    data = TabularFileDataModule(
        path=str(path),
        cache_dir=str(tmp_path / "cache"),
        **COLUMNS,
        history_order="newest_first",
        max_history=4,
        hash_buckets=hash_buckets,
        min_count=2,
    )
    data.setup()
    encoder = TabularEncoder(data.spec(), data.cache_path, data.history_limit())
    sources = data.sources(data.input_files())
    rules = data.split_rules(sources)
    for code, split in enumerate(SPLITS):
        blocks = list(
            encode_blocks(encoder, sources[0], BadRowReport(data.name), 9_000, split=(0, rules[0], code))
        )
        assert len(blocks) > 2
        cached = data.split_data(split)
        want = cached.batch(np.arange(len(cached)))
        rows = [b.rows.batch() for b in blocks]
        got_multi = torch.cat([r.multi for r in rows])
        assert (got_multi == -1).any() and (got_multi == 0).any()  # padding and OOV tags occur
        torch.testing.assert_close(got_multi, want.multi, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([r.sparse for r in rows]), want.sparse, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([r.dense for r in rows]), want.dense, rtol=0, atol=0)
        hist = [r.history for r in rows]
        assert want.history is not None and all(h is not None for h in hist)
        assert int(want.history.lengths().max()) == 4  # max_history cut some
        torch.testing.assert_close(torch.cat([h.values for h in hist]), want.history.values, rtol=0, atol=0)
        torch.testing.assert_close(
            torch.cat([h.timestamps for h in hist]), want.history.timestamps, rtol=0, atol=0
        )
        torch.testing.assert_close(
            torch.cat([h.lengths() for h in hist]), want.history.lengths(), rtol=0, atol=0
        )
        torch.testing.assert_close(torch.cat([h.actions for h in hist]), want.history.actions, rtol=0, atol=0)


def test_predict_scores_equal_the_models_on_the_cached_test_rows(list_run, tmp_path):
    ckpt, folder = list_run
    want = cached_scores(ckpt)
    out = predict_table(tmp_path, ckpt, folder / "test.csv", "block_bytes=3000", "batch_size=17")
    assert out["line"].to_list() == list(range(2, 152)) and out["error"].null_count() == 150
    np.testing.assert_allclose(out["score"].to_numpy(), want, rtol=0, atol=1e-6)
    # Without the label column (serving), the same scores.
    text = (folder / "test.csv").read_text().splitlines()
    unlabelled = write_lines(tmp_path / "serve.csv", [line.rsplit(",", 1)[0] for line in text])
    out = predict_table(tmp_path, ckpt, unlabelled)
    np.testing.assert_allclose(out["score"].to_numpy(), want, rtol=0, atol=1e-6)
    # A parquet file with list columns as lists, rows numbered from 1.
    frame = pl.read_csv(folder / "test.csv", infer_schema=False).with_columns(
        pl.col("tags").str.split(";"), pl.col("price").cast(pl.Float64), pl.col("click").cast(pl.Int64)
    )
    frame.write_parquet(tmp_path / "test.parquet")
    out = predict_table(tmp_path / "pq", ckpt, tmp_path / "test.parquet", "block_bytes=10000")
    assert out["line"].to_list() == list(range(1, 151))
    np.testing.assert_allclose(out["score"].to_numpy(), want, rtol=0, atol=1e-6)


def test_eval_on_the_raw_test_file_equals_eval_on_the_cache(list_run, tmp_path):
    ckpt, folder = list_run
    cached = evaluate(runner_config("eval", tmp_path / "a", f"ckpt_path={ckpt}", "eval_splits=[test]"))
    raw = evaluate(
        runner_config(
            "eval",
            tmp_path / "b",
            f"ckpt_path={ckpt}",
            "rows=all",
            f"+data.path={folder / 'test.csv'}",  # the run's split=files: one file is read whole
        )
    )
    assert cached["eval/encoding"] == "training cache" and raw["eval/encoding"] == "training vocabularies"
    assert raw["eval/rows_read"] == 150
    for key in ("test/auc", "test/logloss", "test/gauc"):
        assert raw[key] == pytest.approx(cached[key], abs=1e-6), key


def test_malformed_list_rows_are_kept_with_their_reason_and_unseen_values_go_to_oov(list_run, tmp_path):
    ckpt, _ = list_run
    lines = list_rows(20, seed=9)
    good = lines[5].split(",")
    lines[5] = ",".join([*good[:5], "a1|a2", "c1", "5|4", good[8]])  # 2 ads, 1 category: unequal lengths
    good = lines[8].split(",")
    lines[8] = ",".join([*good[:5], "a1|a2", "c1|c2", "5|x", good[8]])  # a time that is not a number
    new = lines[12].split(",")
    new[1], new[4], new[5], new[6], new[7] = "a999", "never;t1", "a999|a1", "c1|c1", "9|8"
    lines[12] = ",".join(new)
    out = predict_table(tmp_path, ckpt, write_lines(tmp_path / "x.csv", lines), "max_bad_fraction=0.5")
    assert out.height == 20 and out["line"].to_list() == list(range(2, 22))
    errors = dict(zip(out["line"].to_list(), out["error"].to_list()))
    assert errors[6].startswith("bad_value: hist_ad_id") and "different numbers of events" in errors[6]
    assert errors[9].startswith("bad_value: hist_time") and "not a number" in errors[9]
    assert out["score"].null_count() == 2 and out.filter(pl.col("error").is_null()).height == 18
    run = load_trained(ckpt)
    encoder = TabularEncoder(run.data.spec(), run.data.cache_path, run.data.history_limit())
    source = run.data.serving_source(tmp_path / "x.csv")
    rows = [b.rows for b in encode_blocks(encoder, source, BadRowReport("tabular"))]
    row = rows[0].batch(9, 10)  # line 13 is the 10th good row (lines 6 and 9 are bad)
    assert row.sparse[0, run.data.schema.categorical_index("ad_id")] == 0
    assert row.multi[0, 0, :2].tolist() == [
        0,
        encoder._vocab("tags").filter(pl.col("value") == "t1")["id"].item(),
    ]
    assert row.history is not None
    ad1 = encoder._vocab("ad_id").filter(pl.col("value") == "a1")["id"].item()
    assert row.history.values[:, 0].tolist() == [ad1, 0] and row.history.timestamps.tolist() == [8, 9]
