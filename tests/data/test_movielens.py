"""data=movielens: both layouts, the CTR label, leave-last-out splits, histories, DCNv2 end to end."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from recsys_lab.data.movielens import ACTIONS, CATEGORICAL, MovieLensDataModule
from recsys_lab.data.preprocess.errors import DataError, DatasetNotFoundError
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.runners.train import run
from tests.conftest import compose_train
from tests.data.rawfiles import write_movielens


def movielens(folder, tmp_path, **kw) -> MovieLensDataModule:
    kw = {"batch_size": 64, "eval_batch_size": 64, **kw}
    dm = MovieLensDataModule(path=str(folder), cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


def ratings_frame(folder, variant: str) -> pl.DataFrame:
    """The generated ratings, read independently of the datamodule."""
    if variant == "ml-100k":
        rows = [line.split("\t") for line in (folder / "u.data").read_text().splitlines()]
    else:
        rows = [line.split("::") for line in (folder / "ratings.dat").read_text().splitlines()]
    return pl.DataFrame(
        [[int(x) for x in r] for r in rows], schema=["user", "movie", "rating", "ts"], orient="row"
    )


@pytest.fixture(params=["ml-100k", "ml-1m"])
def variant(request):
    return request.param


def test_leave_last_out_split_labels_and_features(variant, tmp_path):
    folder = write_movielens(tmp_path / variant, variant)
    dm = movielens(folder, tmp_path)
    ratings = ratings_frame(folder, variant)
    per_user = ratings.group_by("user").len().get_column("len").to_numpy()
    assert dm.manifest["rows"] == {
        "train": int(ratings.height - (per_user >= 2).sum() - (per_user >= 3).sum()),
        "val": int((per_user >= 3).sum()),
        "test": int((per_user >= 2).sum()),
    }
    assert dm.manifest["variant"] == variant
    assert [f.name for f in dm.schema.categorical] == list(CATEGORICAL)
    assert dm.schema.user_feature().name == "user_id" and dm.schema.labels == ("click", "rating")
    assert dm.schema.action_names == ACTIONS
    clicks = sum(float(np.asarray(dm.split_data(s).arrays["click"]).sum()) for s in SPLITS)
    assert clicks == (ratings.get_column("rating") >= 4).sum()
    # Each user's test sample is their latest rating.
    test = dm.split_data("test").arrays
    latest = ratings.sort(["user", "ts", "movie"]).group_by("user", maintain_order=True).last()
    got = dict(zip(np.asarray(test["user"]).tolist(), np.asarray(test["rating"]).tolist()))
    counts = dict(ratings.group_by("user").len().iter_rows())
    want = {
        u: float(r) for u, r in zip(latest["user"].to_list(), latest["rating"].to_list()) if counts[u] >= 2
    }
    assert got == want


def test_history_is_the_users_strictly_earlier_ratings_oldest_first(variant, tmp_path):
    folder = write_movielens(tmp_path / variant, variant)
    dm = movielens(folder, tmp_path, max_history=None)
    ratings = ratings_frame(folder, variant)
    test = dm.split_data("test")
    batch = test[torch.arange(len(test))]
    hist = batch.history
    hist.validate()
    ts = ratings.group_by("user").agg(pl.col("ts").sort())
    earlier = {u: t for u, t in zip(ts["user"], ts["ts"].to_list())}
    for b in range(len(test)):
        user = int(batch.user[b])
        seq = hist.timestamps[hist.offsets[b] : hist.offsets[b + 1]].tolist()
        mine = max(earlier[user])  # the test sample is the user's latest rating
        assert seq == sorted(seq) and all(t < mine for t in seq)
        assert len(seq) == sum(t < mine for t in earlier[user])
    # Actions: bit 0 = click, bit r = rating r; event ids use the movie_id vocabulary.
    bits = hist.actions
    assert bool(((bits >> 1) & 0b11111).bool().all()) and torch.equal(
        bits & 1, ((bits >> 4) | (bits >> 5)) & 1
    )
    assert (
        int(hist.values[:, 0].max())
        < dm.schema["hist_movie_id"].vocab_size
        == dm.schema["movie_id"].vocab_size
    )
    # Over all samples, (user, history length) is (user, number of the user's strictly earlier
    # ratings) — including the planted tie, where two ratings of user 1 share a timestamp.
    got = []
    for s in SPLITS:
        data = dm.split_data(s)
        b = data[torch.arange(len(data))]
        got += list(zip(b.user.tolist(), b.history.lengths().tolist()))
    want = [(u, sum(t2 < t for t2 in earlier[u])) for u, t in zip(ratings["user"], ratings["ts"])]
    assert sorted(got) == sorted(want)


def test_max_history_keeps_the_most_recent(tmp_path):
    folder = write_movielens(tmp_path / "ml-1m", "ml-1m")
    full = movielens(folder, tmp_path, max_history=None).split_data("test")
    short = movielens(folder, tmp_path, max_history=3).split_data("test")  # same cache, loading differs
    idx = torch.arange(len(full))
    a, b = full[idx].history, short[idx].history
    assert int(b.lengths().max()) == 3
    np.testing.assert_array_equal(a.truncate(3).timestamps.numpy(), b.timestamps.numpy())


def test_random_split_and_click_threshold(tmp_path):
    folder = write_movielens(tmp_path / "ml-100k", "ml-100k")
    dm = movielens(folder, tmp_path, split="random", click_threshold=5)
    ratings = ratings_frame(folder, "ml-100k")
    assert sum(dm.manifest["rows"].values()) == ratings.height
    clicks = sum(float(np.asarray(dm.split_data(s).arrays["click"]).sum()) for s in SPLITS)
    assert clicks == (ratings.get_column("rating") == 5).sum()


def test_recbole_atomic_files_give_the_same_samples_as_the_ml_100k_layout(tmp_path):
    """RecBole's ml-100k.inter/.user/.item (headers, tab-separated, space-separated genres) are read
    into the same samples, ids and histories as GroupLens' u.data/u.user/u.item with that content."""
    ref = movielens(write_movielens(tmp_path / "grouplens", "ml-100k"), tmp_path)
    folder = write_movielens(tmp_path / "recbole", "recbole")
    dm = movielens(folder, tmp_path)
    assert dm.manifest["variant"] == "recbole:ml-100k" and dm.manifest["rows"] == ref.manifest["rows"]
    assert dm.manifest["bad_rows"]["bad_rows"] == 0
    assert dm.manifest["vocab_sizes"] == ref.manifest["vocab_sizes"]
    for split in SPLITS:
        a, b = dm.split_data(split), ref.split_data(split)
        for col in ("sparse", "click", "rating", "user", "hist_start", "hist_end"):
            np.testing.assert_array_equal(np.asarray(a.arrays[col]), np.asarray(b.arrays[col]), err_msg=col)
    assert movielens(folder, tmp_path, variant="recbole").manifest["variant"] == "recbole:ml-100k"
    # A header without a needed column names the file and the column.
    lines = (folder / "ml-100k.item").read_text().splitlines()
    (folder / "ml-100k.item").write_text("\n".join([lines[0].replace("class", "kind"), *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"ml-100k\.item.*lack class or genre"):
        movielens(folder, tmp_path / "other")


def test_missing_folder_names_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"u\.data.*ratings\.dat.*\.inter.*grouplens"):
        movielens(tmp_path / "nowhere", tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ratings.dat").write_text("1::1::5::1\n")
    with pytest.raises(DatasetNotFoundError, match=r"users\.dat"):
        movielens(tmp_path / "half", tmp_path)


def test_dcnv2_trains_from_the_cli_on_both_layouts(tmp_path, hydra_ctx):
    for variant in ("ml-100k", "ml-1m"):
        folder = write_movielens(tmp_path / variant, variant)
        cfg = compose_train(
            tmp_path / f"run_{variant}", "data=movielens", f"data.path={folder}",
            f"data.cache_dir={tmp_path / 'cache'}", "debug=tiny", "logger=none",
        )  # fmt: skip
        m = run(cfg)
        assert m["data"] == "movielens" and math.isfinite(m["test/logloss"]) and 0 <= m["test/auc"] <= 1
        assert "test/gauc" in m  # NaN here: leave-last-out gives each user one test sample
