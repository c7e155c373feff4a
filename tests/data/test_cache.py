"""The preprocessed cache: reuse, invalidation, determinism, atomic writes, mismatch errors."""

import json
import os
import shutil
import threading

import numpy as np
import polars as pl
import pytest

from recsys_lab.data.avazu import AvazuDataModule
from recsys_lab.data.criteo import CriteoDataModule
from recsys_lab.data.movielens import MovieLensDataModule
from recsys_lab.data.preprocess.cache import file_index
from recsys_lab.data.preprocess.errors import CacheDamagedError, CacheMismatchError
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.data.preprocess.tabular import TabularPreprocessor
from tests.data.rawfiles import criteo_lines, sample_file, write_lines, write_movielens


def criteo(path, cache, **kw) -> CriteoDataModule:
    dm = CriteoDataModule(path=str(path), cache_dir=str(cache), **{"min_count": 1, **kw})
    dm.setup()
    return dm


def caches(root) -> list:
    return sorted(p for p in (root / "criteo").iterdir() if not p.name.startswith("."))


@pytest.fixture
def train_txt(tmp_path):
    return write_lines(tmp_path / "train.txt", criteo_lines())


def test_second_run_reuses_the_cache(train_txt, tmp_path, monkeypatch):
    first = criteo(train_txt, tmp_path / "cache")

    def no_build(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(CriteoDataModule, "build", no_build)
    second = criteo(train_txt, tmp_path / "cache")
    assert second.cache_path == first.cache_path and second.schema == first.schema


def test_any_change_of_inputs_or_config_rebuilds(train_txt, tmp_path):
    root = tmp_path / "cache"
    base = criteo(train_txt, root).cache_path
    assert criteo(train_txt, root, min_count=2).cache_path != base
    assert criteo(train_txt, root, numeric="log1p").cache_path != base
    assert criteo(train_txt, root, split_seed=1).cache_path != base
    assert criteo(train_txt, root, batch_size=7).cache_path == base  # loading settings do not matter
    st = train_txt.stat()
    os.utime(train_txt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = criteo(train_txt, root).cache_path
    assert touched != base
    write_lines(train_txt, criteo_lines()[:150])  # edited
    edited = criteo(train_txt, root)
    assert edited.cache_path not in (base, touched) and sum(edited.manifest["rows"].values()) == 150
    assert len(caches(root)) == 6


@pytest.mark.parametrize("dataset", ["criteo", "avazu", "movielens"])
def test_two_runs_give_identical_arrays(dataset, tmp_path):
    ml = write_movielens(tmp_path / "ml", "ml-1m") if dataset == "movielens" else None

    def build(root):
        if dataset == "criteo":
            dm = CriteoDataModule(path=str(sample_file("criteo_raw")), cache_dir=str(root), min_count=2)
        elif dataset == "avazu":
            dm = AvazuDataModule(path=str(sample_file("avazu")), cache_dir=str(root), min_count=2)
        else:
            dm = MovieLensDataModule(path=str(ml), cache_dir=str(root))
        dm.setup()
        return dm

    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    assert a.cache_path.name == b.cache_path.name
    assert a.schema == b.schema
    files = sorted(p.relative_to(a.cache_path) for p in a.cache_path.rglob("*.npy"))
    assert files == sorted(p.relative_to(b.cache_path) for p in b.cache_path.rglob("*.npy")) and files
    for f in files:
        np.testing.assert_array_equal(np.load(a.cache_path / f), np.load(b.cache_path / f), err_msg=str(f))
    assert pl.read_parquet(a.cache_path / "vocab.parquet").equals(
        pl.read_parquet(b.cache_path / "vocab.parquet")
    )


def test_an_interrupted_build_leaves_no_cache(train_txt, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    original = TabularPreprocessor._finalize

    def crash(self, stage, out):
        original(self, stage, out)  # every array written ...
        raise KeyboardInterrupt("killed before the manifest")  # ... but not the manifest

    monkeypatch.setattr(TabularPreprocessor, "_finalize", crash)
    with pytest.raises(KeyboardInterrupt):
        criteo(train_txt, root)
    assert caches(root) == [] and not list((root / "criteo").glob(".tmp-*"))
    monkeypatch.setattr(TabularPreprocessor, "_finalize", original)
    assert (criteo(train_txt, root).cache_path / "manifest.json").is_file()


def test_leftovers_of_a_killed_build_are_removed(train_txt, tmp_path):
    root = tmp_path / "cache"
    folder = criteo(train_txt, root).cache_path
    shutil.rmtree(folder)
    mine = root / "criteo" / f".tmp-{folder.name}-1-deadbeef"  # a killed build of this key (no cleanup ran)
    other = root / "criteo" / f".tmp-{'0' * 16}-1-deadbeef"  # another key's, maybe still running
    for d in (mine, other):
        d.mkdir()
        (d / "sparse.npy").write_bytes(b"partial")
    assert criteo(train_txt, root).cache_path == folder
    assert not mine.exists() and other.exists()


def test_concurrent_builders_build_once(train_txt, tmp_path, monkeypatch):
    builds = []
    original = CriteoDataModule.build

    def counting(self, *args):
        builds.append(1)
        return original(self, *args)

    monkeypatch.setattr(CriteoDataModule, "build", counting)
    results, errors = [], []

    def go():
        try:
            results.append(criteo(train_txt, tmp_path / "cache").cache_path)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(builds) == 1


def _reseal(folder) -> None:
    """Rewrite the manifest's file checksums, as if the cache had been built as it now is (so the
    checks behind the checksums are reached)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "files": file_index(folder)}))


def test_a_cache_that_does_not_match_the_config_is_refused(train_txt, tmp_path):
    dm = criteo(train_txt, tmp_path / "cache")
    folder = dm.cache_path
    schema = json.loads((folder / "schema.json").read_text())
    tampered = {**schema, "features": schema["features"][:-1]}
    (folder / "schema.json").write_text(json.dumps(tampered))
    with pytest.raises(CacheDamagedError, match=r"schema\.json has"):
        criteo(train_txt, tmp_path / "cache")
    _reseal(folder)
    with pytest.raises(
        CacheMismatchError, match=r"does not match the config.*39 features.*38 features.*Delete"
    ):
        criteo(train_txt, tmp_path / "cache")
    (folder / "schema.json").write_text(json.dumps(schema))
    _reseal(folder)

    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(
        json.dumps({**manifest, "config": {**manifest["config"], "min_count": 5}})
    )
    with pytest.raises(
        CacheMismatchError, match=r"different preprocessing config \(differs in \['min_count'\]\)"
    ):
        criteo(train_txt, tmp_path / "cache")
    (folder / "manifest.json").write_text(json.dumps(manifest))

    np.save(folder / "train" / "sparse.npy", np.zeros((3, 39), dtype=np.int32))
    with pytest.raises(CacheDamagedError, match=r"train/sparse\.npy has"):
        criteo(train_txt, tmp_path / "cache")
    _reseal(folder)
    again = criteo(train_txt, tmp_path / "cache")
    with pytest.raises(CacheMismatchError, match=r"train/sparse\.npy has shape"):
        next(iter(again.train_dataloader()))


def test_cache_holds_schema_vocab_and_summary(train_txt, tmp_path):
    dm = criteo(train_txt, tmp_path / "cache", min_count=3)
    names = {p.name for p in dm.cache_path.iterdir()}
    assert {
        "manifest.json",
        "schema.json",
        "vocab.parquet",
        "transforms.json",
        "bad_rows.json",
        *SPLITS,
    } <= names
    assert "_staging" not in names
    vocab = pl.read_parquet(dm.cache_path / "vocab.parquet")
    assert vocab.get_column("count").min() >= 3
    sizes = vocab.group_by("field").agg(pl.len()).sort("field")
    for field, n in sizes.iter_rows():
        assert dm.schema[field].vocab_size == n + 2
    assert dm.manifest["inputs"][0]["path"] == str(train_txt.resolve())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.unlink(), "val/click.npy is missing"),
        (lambda f: f.write_bytes(f.read_bytes()[:-4]), "val/click.npy has"),
        (lambda f: f.write_bytes(f.read_bytes()[:-4] + b"\x00\x00\x80\x3f"), "does not match its checksum"),
    ],
    ids=["deleted", "truncated", "changed"],
)
def test_a_damaged_cache_is_named_when_opened(train_txt, tmp_path, damage, message):
    folder = criteo(train_txt, tmp_path / "cache").cache_path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"train/sparse.npy", "val/click.npy", "schema.json"} <= set(manifest["files"])
    damage(folder / "val" / "click.npy")
    with pytest.raises(CacheDamagedError, match=message) as err:
        criteo(train_txt, tmp_path / "cache")  # fails when opened, before any training
    assert f"rm -rf {folder}" in str(err.value)
