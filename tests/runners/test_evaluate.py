"""recsys-eval: a checkpoint scored on its own splits, on the same rows preprocessed by another
config (the training vocabularies must be used), on a new file, and through the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.metrics import auc, logloss
from recsys_lab.runners.evaluate import evaluate
from recsys_lab.runners.predict import predict
from tests.data.rawfiles import write_movielens
from tests.runners.conftest import runner_config, train_tiny
from tests.runners.rawgen import write_criteo

METRIC_KEYS = ("auc", "logloss", "gauc", "ne", "calibration")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    return train_tiny(folder, "model=dnn")


@pytest.fixture(scope="module")
def criteo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("criteo")
    write_criteo(folder / "criteo.tsv", 3000, seed=0)
    write_criteo(folder / "day2.tsv", 700, seed=1)
    data = ("data=criteo", f"data.path={folder / 'criteo.tsv'}", f"data.cache_dir={folder / 'cache'}")
    metrics, ckpt = train_tiny(folder, "model=deepfm", *data, "data.min_count=1")
    return folder, metrics, ckpt, data


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-6)


def test_eval_of_the_runs_own_data_reproduces_its_metrics(synthetic_run, tmp_path):
    trained, ckpt = synthetic_run
    m = evaluate(runner_config("eval", tmp_path, f"ckpt_path={ckpt}", "num_threads=1"))
    for split in ("val", "test"):
        for k in (*METRIC_KEYS, "oracle_auc", "oracle_logloss"):
            assert _same(m[f"{split}/{k}"], trained[f"{split}/{k}"]), f"{split}/{k}"
    for k in ("params/embedding", "params/dense", "flops/per_example", "model", "data", "seed"):
        assert m[k] == trained[k], k
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/auc"] == pytest.approx(m["test/auc"])
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_eval_encodes_rows_with_the_training_vocabularies(criteo_run, tmp_path):
    """Another preprocessing config (min_count=3, so another cache) over the same file: the same
    test rows must be encoded with the run's vocabularies, giving the training metrics exactly."""
    folder, trained, ckpt, data = criteo_run
    m = evaluate(runner_config("eval", tmp_path, f"ckpt_path={ckpt}", *data, "data.min_count=3"))
    assert m["eval/encoding"] == "training vocabularies"
    assert m["eval/rows"] == "splits"
    for split in ("val", "test"):
        for k in METRIC_KEYS:
            assert _same(m[f"{split}/{k}"], trained[f"{split}/{k}"]), f"{split}/{k}"
    assert not any(p.name.startswith(".tmp") for p in (folder / "cache" / "criteo").iterdir())
    assert len(list((folder / "cache" / "criteo").glob("*/manifest.json"))) == 1  # nothing was rebuilt


def test_eval_on_a_new_file_scores_every_row_like_predict(criteo_run, tmp_path):
    folder, _, ckpt, data = criteo_run
    day2 = folder / "day2.tsv"
    m = evaluate(
        runner_config("eval", tmp_path / "e", f"ckpt_path={ckpt}", *data[:1], f"data.path={day2}", data[2])
    )
    assert m["eval/rows"] == "all" and m["eval/rows_read"] == 700 and m["eval/bad_rows"] == 0
    assert "val/auc" not in m
    out = tmp_path / "p.parquet"
    predict(runner_config("predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={day2}", f"output={out}"))
    scores = torch.from_numpy(pl.read_parquet(out)["score"].to_numpy().copy())
    labels = torch.tensor([float(line.split("\t")[0]) for line in day2.read_text().splitlines()])
    assert m["test/auc"] == pytest.approx(auc(scores, labels), abs=1e-6)
    assert m["test/logloss"] == pytest.approx(logloss(scores, labels), abs=1e-6)


def test_eval_on_data_with_another_schema_fails_clearly(synthetic_run, tmp_path):
    _, ckpt = synthetic_run
    cfg = runner_config("eval", tmp_path, f"ckpt_path={ckpt}", "data=synthetic", "data.num_categorical=5")
    with pytest.raises(DataError, match="schema other than the one"):
        evaluate(cfg)


def test_eval_of_a_missing_checkpoint_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoints/best\.ckpt"):
        evaluate(runner_config("eval", tmp_path, f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def test_hydra_entry_writes_a_run_folder(synthetic_run, tmp_path, monkeypatch, capsys):
    """``python -m recsys_lab.evaluate`` / ``recsys-eval`` run this ``main``."""
    import recsys_lab.evaluate as entry

    _, ckpt = synthetic_run
    GlobalHydra.instance().clear()
    monkeypatch.setattr(
        sys, "argv", ["recsys-eval", f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}", "num_threads=1"]
    )
    try:
        entry.main()
    finally:
        GlobalHydra.instance().clear()
    assert "test" in capsys.readouterr().out
    (metrics,) = list((tmp_path / "eval").glob("*/metrics.json"))
    assert json.loads(metrics.read_text())["model"] == "DNN"


def test_eval_on_another_dataset_fails_clearly(synthetic_run, tmp_path):
    _, ckpt = synthetic_run
    cfg = runner_config("eval", tmp_path, f"ckpt_path={ckpt}", "data=criteo", f"data.path={tmp_path}")
    with pytest.raises(DataError, match="trained on synthetic data; data=criteo is another dataset"):
        evaluate(cfg)


def test_movielens_run_evaluates_on_its_own_files_only(tmp_path):
    folder = write_movielens(tmp_path / "ml-100k", "ml-100k")
    data = ("data=movielens", f"data.path={folder}", f"data.cache_dir={tmp_path / 'cache'}")
    trained, ckpt = train_tiny(tmp_path / "train", "model=dnn", *data)
    m = evaluate(runner_config("eval", tmp_path / "e1", f"ckpt_path={ckpt}"))
    assert m["eval/encoding"] == "data config"
    for k in METRIC_KEYS:
        assert _same(m[f"test/{k}"], trained[f"test/{k}"]), k
    with pytest.raises(DataError, match="run's own files and preprocessing only"):
        evaluate(runner_config("eval", tmp_path / "e2", f"ckpt_path={ckpt}", *data, "data.min_count=2"))
