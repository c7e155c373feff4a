"""recsys-predict on raw MovieLens rating rows (ml-100k u.data, ml-1m ratings.dat, RecBole .inter):
encoded as the training cache holds the same ratings (ids, side features, labels, and the history
of each user's strictly earlier training ratings), scores equal to the model's on the cached test
batches, unlabelled rows, malformed rows kept with their reason, unseen users and movies."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys_lab.data.movielens import MovieLensDataModule
from recsys_lab.data.preprocess.encode import MovieLensEncoder, RowErrors
from recsys_lab.data.preprocess.errors import BadRowsError
from recsys_lab.data.preprocess.split import SPLITS, TEST, TRAIN, VAL
from recsys_lab.runners.common import load_trained
from recsys_lab.runners.evaluate import evaluate
from tests.data.rawfiles import write_lines, write_movielens
from tests.runners.conftest import runner_config, train_tiny
from tests.runners.scoring import cached_scores, predict_table

RATINGS = {"ml-100k": ("u.data", "\t"), "ml-1m": ("ratings.dat", "::"), "recbole": ("ml-100k.inter", "\t")}


def raw_lines(folder, variant: str) -> tuple[list[str], int]:
    """The ratings file's lines (without a header) and the physical line number of the first."""
    lines = (folder / RATINGS[variant][0]).read_text().splitlines()
    return (lines[1:], 2) if variant == "recbole" else (lines, 1)


def cache_lines(folder, variant: str) -> dict[str, list[int]]:
    """Per split, the physical lines of the ratings file in the cache's row order (by user, time,
    movie, line; leave-last-out per user), worked out from the raw text."""
    lines, first = raw_lines(folder, variant)
    sep = RATINGS[variant][1]
    rows = [[int(x) for x in line.split(sep)] + [first + i] for i, line in enumerate(lines)]
    df = pl.DataFrame(rows, schema=["user", "movie", "rating", "ts", "line"], orient="row")
    df = df.sort(["user", "ts", "movie", "line"]).with_columns(
        pl.int_range(pl.len()).over("user").alias("rank"), pl.len().over("user").alias("count")
    )
    rank, count = df["rank"].to_numpy(), df["count"].to_numpy()
    codes = np.full(df.height, TRAIN)
    codes[(rank == count - 1) & (count >= 2)] = TEST
    codes[(rank == count - 2) & (count >= 3)] = VAL
    return {s: df["line"].to_numpy()[codes == i].tolist() for i, s in enumerate(SPLITS)}


@pytest.mark.parametrize("variant", ["ml-100k", "ml-1m", "recbole"])
def test_encoding_the_raw_ratings_reproduces_the_cache(tmp_path, variant):
    folder = write_movielens(tmp_path / variant, variant)
    data = MovieLensDataModule(path=str(folder), cache_dir=str(tmp_path / "cache"), max_history=5)
    data.setup()
    encoder = MovieLensEncoder(data)
    path = folder / RATINGS[variant][0]
    blocks = list(encoder.blocks(path, RowErrors(data.name), block_bytes=4000))
    assert len(blocks) > 2
    lines = np.concatenate([b.lines for b in blocks])
    position = {int(line): i for i, line in enumerate(lines)}
    rows = [b.rows for b in blocks]
    for split, order in cache_lines(folder, variant).items():
        want = data.split_data(split).batch(np.arange(len(order)))
        idx = np.array([position[line] for line in order])
        sparse = np.concatenate([r.sparse for r in rows])[idx]
        np.testing.assert_array_equal(sparse, want.sparse.numpy())
        for name in ("click", "rating"):
            got = np.concatenate([r.labels if name == "click" else r.extra_labels[name] for r in rows])[idx]
            np.testing.assert_array_equal(got, want.labels[name].numpy())
        np.testing.assert_array_equal(np.concatenate([r.user for r in rows])[idx], want.user.numpy())
        # Histories, one row at a time in the cache's order.
        got = [rows[0].batch(0, 0)]  # an empty batch keeps torch.cat simple
        where = np.cumsum([0] + [len(r) for r in rows])
        for i in idx:
            b = int(np.searchsorted(where, i, side="right") - 1)
            got.append(rows[b].batch(int(i - where[b]), int(i - where[b] + 1)))
        hist = [g.history for g in got]
        assert want.history is not None and int(want.history.lengths().max()) == 5
        torch.testing.assert_close(
            torch.cat([h.lengths() for h in hist]), want.history.lengths(), rtol=0, atol=0
        )
        for field in ("values", "actions", "timestamps"):
            torch.testing.assert_close(
                torch.cat([getattr(h, field) for h in hist]), getattr(want.history, field), rtol=0, atol=0
            )
    # Without the rating column: the same inputs, no labels.
    raw, first = raw_lines(folder, variant)
    sep = RATINGS[variant][1]
    header = ["user_id:token\titem_id:token\ttimestamp:float"] if variant == "recbole" else []
    unlabelled = [sep.join(np.array(line.split(sep))[[0, 1, 3]]) for line in raw]
    path = write_lines(tmp_path / f"serve{path.suffix}", header + unlabelled)
    assert "no rating" in encoder.layout(path).name or "rating" not in encoder.layout(path).read
    (block,) = list(encoder.blocks(path, RowErrors(data.name)))
    assert block.rows.labels is None and not block.rows.extra_labels
    np.testing.assert_array_equal(block.lines, np.arange(first, first + len(raw)))
    np.testing.assert_array_equal(block.rows.sparse, np.concatenate([r.sparse for r in rows]))
    torch.testing.assert_close(
        block.rows.batch().history.values, torch.cat([r.batch().history.values for r in rows])
    )


@pytest.fixture(scope="module")
def movielens_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    folder = write_movielens(root / "ml-100k", "ml-100k")
    data = (
        "data=movielens",
        f"data.path={folder}",
        f"data.cache_dir={root / 'cache'}",
        "data.max_history=6",
        "data.batch_size=64",
    )
    _, ckpt = train_tiny(root, "model=din", *data)
    return ckpt, folder


def test_predict_scores_equal_the_models_on_the_cached_test_rows(movielens_run, tmp_path):
    ckpt, folder = movielens_run
    lines, first = raw_lines(folder, "ml-100k")
    test = [lines[line - first] for line in cache_lines(folder, "ml-100k")["test"]]
    want = cached_scores(ckpt)
    assert len(test) == len(want) > 20
    out = predict_table(
        tmp_path, ckpt, write_lines(tmp_path / "test.data", test), "block_bytes=300", "batch_size=7"
    )
    assert out.columns == ["line", "score", "error"] and out["line"].to_list() == list(
        range(1, len(test) + 1)
    )
    assert out["error"].null_count() == len(test)
    np.testing.assert_allclose(out["score"].to_numpy(), want, rtol=0, atol=1e-6)
    # Without the rating (user, movie, timestamp): the same scores.
    unlabelled = ["\t".join(np.array(line.split("\t"))[[0, 1, 3]]) for line in test]
    out = predict_table(tmp_path, ckpt, write_lines(tmp_path / "serve.data", unlabelled))
    np.testing.assert_allclose(out["score"].to_numpy(), want, rtol=0, atol=1e-6)


def test_malformed_rows_are_kept_and_unseen_users_and_movies_are_scored(movielens_run, tmp_path):
    ckpt, folder = movielens_run
    lines, _ = raw_lines(folder, "ml-100k")
    late = 2_000_000_000  # after every training rating
    rows = [
        lines[0],
        "1\t5\t7\t880000000",  # bad_label: a rating of 7
        "x\t5\t3\t880000000",  # non_numeric user
        "1\t5\t3",  # field_count
        f"999\t5\t4\t{late}",  # a user unknown to training
        f"1\t999\t4\t{late}",  # a movie unknown to training; user 1 after all its training ratings
        "1\t5\t2.5\t880000000.5",  # non_numeric: a timestamp that is not an integer
    ]
    with pytest.raises(BadRowsError, match=r"4 of 7 rows"):
        predict_table(tmp_path, ckpt, write_lines(tmp_path / "x.data", rows))
    out = pl.read_parquet(tmp_path / "x.parquet")  # written before failing
    assert out["line"].to_list() == list(range(1, 8))
    reasons = [e.split(":")[0] if e else None for e in out["error"].to_list()]
    assert reasons == [None, "bad_label", "non_numeric", "field_count", None, None, "non_numeric"]
    assert out["score"].is_null().to_list() == [r is not None for r in reasons]
    run = load_trained(ckpt)
    encoder = MovieLensEncoder(run.data)
    (block,) = list(encoder.blocks(tmp_path / "x.data", RowErrors("movielens")))
    schema = run.data.schema
    new_user, new_movie = block.rows.batch(1, 2), block.rows.batch(2, 3)
    col = {c: schema.categorical_index(c) for c in ("user_id", "movie_id", "gender", "genre")}
    assert (
        new_user.sparse[0, col["user_id"]] == 0 and new_user.sparse[0, col["gender"]] == 1
    )  # OOV; no side row
    assert new_user.history is not None and new_user.history.num_events == 0
    assert new_movie.sparse[0, col["movie_id"]] == 0 and new_movie.sparse[0, col["genre"]] == 1
    assert new_movie.sparse[0, col["user_id"]] >= 2 and new_movie.sparse[0, col["gender"]] >= 2
    # User 1 after the training data's end: its latest max_history training ratings, oldest first.
    times = sorted(int(line.split("\t")[3]) for line in lines if line.split("\t")[0] == "1")
    assert new_movie.history is not None and new_movie.history.timestamps.tolist() == times[-6:]


def test_eval_on_a_file_of_ratings_equals_eval_on_the_cached_test_split(movielens_run, tmp_path):
    ckpt, folder = movielens_run
    lines, first = raw_lines(folder, "ml-100k")
    test = write_lines(
        tmp_path / "test.data", [lines[i - first] for i in cache_lines(folder, "ml-100k")["test"]]
    )
    cached = evaluate(runner_config("eval", tmp_path / "a", f"ckpt_path={ckpt}", "eval_splits=[test]"))
    raw = evaluate(runner_config("eval", tmp_path / "b", f"ckpt_path={ckpt}", f"+data.path={test}"))
    assert raw["eval/rows"] == "all" and raw["eval/rows_read"] == len(cache_lines(folder, "ml-100k")["test"])
    for key in ("test/auc", "test/logloss", "test/ne"):
        assert raw[key] == pytest.approx(cached[key], abs=1e-6), key
