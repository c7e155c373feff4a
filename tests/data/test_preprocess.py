"""Preprocessing pieces: bad-row accounting (each kind of corruption), readers, vocabularies,
block-size independence, and the loader (window shuffle, distributed shards, workers)."""

import gzip
import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from recsys_lab.data.cached import WindowShuffleSampler
from recsys_lab.data.criteo import CriteoDataModule
from recsys_lab.data.preprocess.errors import BadRowsError, DataError
from recsys_lab.data.preprocess.readers import open_binary
from recsys_lab.data.preprocess.split import SPLITS, position_codes, position_cuts, random_codes
from recsys_lab.data.preprocess.vocab import MISSING_KEY, IntCounter, StringCounter
from tests.data.rawfiles import criteo_lines, sample_file, sample_lines, write_lines


def criteo(path, tmp_path, **kw) -> CriteoDataModule:
    kw = {"min_count": 1, "batch_size": 50, "eval_batch_size": 50, **kw}
    dm = CriteoDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


def corrupt(lines: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """The sample with one of each kind of corruption inserted; returns lines and the 1-based
    line numbers of the bad rows per reason."""
    out = list(lines)
    good = lines[0].split("\t")

    def row(**changes: str) -> str:
        fields = list(good)
        for k, v in changes.items():
            fields[int(k[1:])] = v
        return "\t".join(fields)

    bad = {
        "field_count": ["\t".join(good[:-1]), "\t".join([*good, "extra"]), ""],  # too few, too many, blank
        "non_numeric": [row(f5="abc"), row(f2="nan"), row(f3="inf")],  # I5, I2, I3
        "bad_label": [row(f0="2"), row(f0=""), row(f0="x")],
    }
    where: dict[str, list[int]] = {k: [] for k in bad}
    positions = iter([5, 17, 40, 77, 120, 150, 181, 190, 199])
    inserts = [(next(positions), reason, text) for reason, texts in bad.items() for text in texts]
    for pos, reason, text in sorted(inserts, key=lambda t: t[0]):
        out.insert(pos, text)
        where[reason].append(pos + 1)
    return out, where


def test_each_kind_of_corruption_is_counted_and_quoted(tmp_path):
    lines, where = corrupt(criteo_lines())
    path = write_lines(tmp_path / "train.txt", lines)
    with pytest.raises(BadRowsError) as err:
        criteo(path, tmp_path)  # 9 bad of 209 rows > 0.1%
    msg = str(err.value)
    assert "9 of 209 rows" in msg and "data.max_bad_fraction=0.001" in msg
    assert "field_count 3, non_numeric 3, bad_label 3" in msg
    assert (
        f"{path}:{where['field_count'][0]}: field_count (expected 40 tab-separated fields, found 39)" in msg
    )
    assert f"{path}:{where['non_numeric'][0]}: non_numeric (column I5 is 'abc', not a number)" in msg
    assert f"{path}:{where['bad_label'][0]}: bad_label" in msg
    assert not list((tmp_path / "cache" / "criteo").glob("[!.]*")), "no cache may be left behind"

    dm = criteo(path, tmp_path, max_bad_fraction=0.05)  # now skipped
    assert sum(dm.manifest["rows"].values()) == 200
    saved = json.loads((dm.cache_path / "bad_rows.json").read_text())
    assert saved["by_reason"] == {"field_count": 3, "non_numeric": 3, "bad_label": 3, "bad_value": 0}
    assert saved["rows_read"] == 209
    lines_by_reason: dict[str, list[int]] = {}
    for ex in saved["examples"]:
        lines_by_reason.setdefault(ex["reason"], []).append(ex["line"])
        assert ex["content"] == lines[ex["line"] - 1][: len(ex["content"])]
    assert {k: sorted(v) for k, v in lines_by_reason.items()} == where


def test_bad_rows_in_a_clean_block_keep_their_line_numbers(tmp_path):
    """A bad label alone leaves the block on the fast path; its line number must still be exact."""
    lines = criteo_lines()
    bad = lines[100].split("\t")
    bad[0] = "7"
    lines[100] = "\t".join(bad)
    dm = criteo(write_lines(tmp_path / "t.txt", lines), tmp_path, max_bad_fraction=0.01)
    (ex,) = json.loads((dm.cache_path / "bad_rows.json").read_text())["examples"]
    assert (ex["line"], ex["reason"]) == (101, "bad_label") and "'7'" not in ex["content"][:1]


def test_csv_header_and_crlf_line_ends(tmp_path):
    csv = sample_lines("criteo_csv")
    dm = criteo(write_lines(tmp_path / "crlf.csv", csv, newline="\r\n"), tmp_path / "a")
    ref = criteo(sample_file("criteo_csv"), tmp_path / "b")
    for s in SPLITS:
        np.testing.assert_array_equal(dm.split_data(s).arrays["sparse"], ref.split_data(s).arrays["sparse"])
    short = [csv[0], *csv[1:4], csv[4].rsplit(",", 1)[0]]  # a CSV row one field short
    with pytest.raises(BadRowsError, match=r"crlf_short\.csv:5: field_count \(expected 40 comma-separated"):
        criteo(write_lines(tmp_path / "crlf_short.csv", short, newline="\r\n"), tmp_path / "c")


def test_empty_unreadable_and_truncated_files(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        criteo(write_lines(tmp_path / "empty.txt", []), tmp_path)
    header_only = write_lines(tmp_path / "header.csv", [sample_lines("criteo_csv")[0]])
    with pytest.raises(DataError, match=r"header\.csv is empty: no data lines after its header"):
        criteo(header_only, tmp_path)
    data = gzip.compress(("\n".join(criteo_lines()) + "\n").encode())
    truncated = tmp_path / "train.txt.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        criteo(truncated, tmp_path)
    with pytest.raises(DataError, match="Cannot read"):
        open_binary(tmp_path)  # a folder is not a readable file


def test_block_size_does_not_change_the_output(tmp_path, monkeypatch):
    lines, _ = corrupt(criteo_lines())
    path = write_lines(tmp_path / "train.txt", lines)
    ref = criteo(path, tmp_path / "a", max_bad_fraction=0.05)
    original = CriteoDataModule.options
    monkeypatch.setattr(CriteoDataModule, "options", lambda self: replace(original(self), block_bytes=1500))
    small = criteo(path, tmp_path / "b", max_bad_fraction=0.05)
    for s in SPLITS:
        for name in ("sparse", "dense", "click"):
            np.testing.assert_array_equal(ref.split_data(s).arrays[name], small.split_data(s).arrays[name])
    assert json.loads((ref.cache_path / "bad_rows.json").read_text()) == json.loads(
        (small.cache_path / "bad_rows.json").read_text()
    )


def test_vocabulary_min_count_missing_and_oov():
    counter = StringCounter("f")
    frame = pl.DataFrame({"x": ["b", "a", "b", None, "c", "a", "b", "z"]})
    keys = frame.select(counter.key_expr(pl.col("x"))).to_series().to_numpy()
    counter.update(keys, num_train=7)  # the last row ("z") is not a training row
    vocab = counter.fit(min_count=2)
    assert vocab.values == ["b", "a"] and vocab.counts.tolist() == [3, 2] and vocab.size == 4
    assert vocab.encode(keys).tolist() == [2, 3, 2, 1, 0, 3, 2, 0]  # c rare -> 0, missing -> 1, z unseen -> 0
    ints = IntCounter("h")
    keys = np.array([5, 3, MISSING_KEY, 5, -2], dtype=np.int32)
    ints.update(keys)
    fitted = ints.fit(1)
    assert fitted.values == ["5", "-2", "3"]  # count, then value
    assert fitted.encode(np.array([5, 100, -50, MISSING_KEY], dtype=np.int32)).tolist() == [2, 0, 0, 1]


def test_split_assignment():
    keys = np.arange(100_000)
    codes = random_codes(keys, seed=1, fractions=(0.8, 0.1, 0.1))
    share = np.bincount(codes, minlength=3) / len(keys)
    assert np.allclose(share, [0.8, 0.1, 0.1], atol=0.01)
    np.testing.assert_array_equal(
        codes[500:600], random_codes(keys[500:600], seed=1, fractions=(0.8, 0.1, 0.1))
    )
    assert position_cuts(200, (0.8, 0.1, 0.1)) == (160, 180)
    assert np.bincount(position_codes(np.arange(200), (160, 180))).tolist() == [160, 20, 20]
    with pytest.raises(ValueError, match="split_fractions"):
        random_codes(keys, 0, (0.5, 0.1, 0.1))


def test_window_shuffle_sampler():
    n, b, w = 1000, 64, 100
    s = WindowShuffleSampler(n, b, shuffle=True, buffer_size=w, seed=3)
    batches = list(s)
    rows = torch.cat(batches)
    assert len(batches) == len(s) == 16 and sorted(rows.tolist()) == list(range(n))
    assert torch.equal(rows, torch.cat(list(s)))  # same epoch, same order
    assert max(len(set((x // w).tolist())) for x in batches) <= 2  # a batch spans at most two windows
    s.set_epoch(1)
    assert not torch.equal(rows, torch.cat(list(s)))
    ordered = torch.cat(list(WindowShuffleSampler(n, b, shuffle=False, buffer_size=w)))
    assert ordered.tolist() == list(range(n))
    shards = [
        torch.cat(list(WindowShuffleSampler(n, b, True, w, seed=3, num_replicas=3, rank=r))) for r in range(3)
    ]
    assert [len(x) for x in shards] == [333] * 3
    assert len(set(torch.cat(shards).tolist())) == 999  # disjoint
    assert [len(WindowShuffleSampler(n, b, True, w, num_replicas=3, rank=r)) for r in range(3)] == [6] * 3


def test_workers_yield_the_same_batches(tmp_path):
    path = sample_file("criteo_raw")
    single = criteo(path, tmp_path, shuffle_buffer=64)
    multi = criteo(path, tmp_path, shuffle_buffer=64, num_workers=2)
    a, b = list(single.train_dataloader()), list(multi.train_dataloader())
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert torch.equal(x.sparse, y.sparse) and torch.equal(x.labels["click"], y.labels["click"])
