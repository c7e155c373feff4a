"""Encoding new rows with a cache's fitted preprocessing (recsys_lab.data.preprocess.encode) gives
exactly the ids and values the cache holds for the same rows, for every numeric transform,
hashed vocabularies and Avazu's derived fields."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lab.data.avazu import AvazuDataModule
from recsys_lab.data.criteo import CriteoDataModule
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.encode import TabularEncoder, encode_blocks
from recsys_lab.data.preprocess.split import SPLITS
from tests.runners.rawgen import write_avazu, write_criteo

CASES = [
    pytest.param("criteo", {}, id="criteo-log_squared"),
    pytest.param("criteo", {"numeric": "log1p"}, id="criteo-log1p"),
    pytest.param("criteo", {"numeric": "log_standardize"}, id="criteo-log_standardize"),
    pytest.param("criteo", {"numeric": "quantile", "num_quantiles": 8}, id="criteo-quantile"),
    pytest.param("criteo", {"hash_buckets": 40}, id="criteo-hashed"),
    pytest.param("avazu", {"time_features": ["hour", "weekday", "weekend"]}, id="avazu"),
]


@pytest.mark.parametrize(("dataset", "options"), CASES)
def test_encoding_the_raw_rows_reproduces_the_cache(tmp_path, dataset, options):
    if dataset == "criteo":
        path = write_criteo(tmp_path / "c.tsv", 1500, seed=0)
        data = CriteoDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), min_count=3, **options)
    else:
        path = write_avazu(tmp_path / "a.csv", 1500, seed=0)
        data = AvazuDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), min_count=3, **options)
    data.setup()
    encoder = TabularEncoder(data.spec(), data.cache_path)
    sources = data.sources(data.input_files())
    rules = data.split_rules(sources)
    for code, split in enumerate(SPLITS):
        blocks = [
            b
            for si, src in enumerate(sources)
            for b in encode_blocks(encoder, src, BadRowReport(data.name), 20_000, split=(si, rules[si], code))
        ]
        assert len(blocks) > 3  # several blocks per file
        cached = data.split_data(split).arrays
        np.testing.assert_array_equal(np.concatenate([b.rows.sparse for b in blocks]), cached["sparse"])
        np.testing.assert_array_equal(np.concatenate([b.rows.dense for b in blocks]), cached["dense"])
        np.testing.assert_array_equal(np.concatenate([b.rows.labels for b in blocks]), cached["click"])
        if "user" in cached:  # GAUC groups: another numbering of the same partition
            mine = np.concatenate([b.rows.user for b in blocks])
            pairs = set(zip(cached["user"].tolist(), mine.tolist()))
            assert len(pairs) == len(set(cached["user"].tolist())) == len(set(mine.tolist()))
