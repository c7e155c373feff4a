"""Helpers of the predict tests: a run's scores on its cached split, and recsys-predict's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys_lab.runners.common import load_trained
from recsys_lab.runners.predict import predict
from tests.runners.conftest import runner_config


@torch.inference_mode()
def cached_scores(ckpt: Path, split: str = "test") -> np.ndarray:
    """The trained model's click probabilities ``[N]`` on a split of its training cache, in cache order."""
    run = load_trained(ckpt)
    data = run.data.split_data(split)
    return torch.sigmoid(run.model(data.batch(np.arange(len(data))).for_serving())).numpy()


def predict_table(tmp_path: Path, ckpt: Path, path: Path, *overrides: str) -> pl.DataFrame:
    """Run recsys-predict on ``path`` (output ``tmp_path/<stem>.parquet``) and read its output."""
    out = tmp_path / f"{path.stem}.parquet"
    predict(
        runner_config(
            "predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={path}", f"output={out}", *overrides
        )
    )
    return pl.read_parquet(out)
