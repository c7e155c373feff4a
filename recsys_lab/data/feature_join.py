"""``data=feature_join``: any datamodule plus precomputed per-sample feature columns in ``Batch.dense``.

A feature writer (e.g. LUM's knowledge querying, :mod:`recsys_lab.lum_features`) stores, per split,
an array ``[rows of split, K]`` whose row r belongs to the split's r-th sample in the wrapped
datamodule's dataset order, plus a JSON file naming the K columns. This wrapper appends those
columns to ``Batch.dense`` and to the schema's numeric features, so every model reads them with no
change. Batches are cut by the wrapped datamodule's own samplers (same shuffling, same resume
behaviour); the wrapper only knows which rows each batch holds.

With ``features_dir: null`` it passes the wrapped data through unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from recsys_lab.data.batch import Batch
from recsys_lab.data.datamodule import SPLITS, DataModule
from recsys_lab.data.schema import Feature, FeatureKind, Schema


def _identity(batch: Batch) -> Batch:
    return batch


class _JoinedDataset(Dataset[Batch]):
    """Batches of ``inner`` (indexed by whole-batch index tensors) with ``columns[index]`` appended."""

    def __init__(self, inner: Dataset[Batch], columns: np.ndarray) -> None:
        self.inner, self.columns = inner, columns

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: Tensor) -> Batch:  # type: ignore[override]
        batch = self.inner[index]
        extra = torch.from_numpy(np.ascontiguousarray(self.columns[index.numpy()]))  # [B, K]
        batch.dense = torch.cat([batch.dense, extra.to(batch.dense.dtype)], dim=1)
        return batch


class FeatureJoinDataModule(DataModule):
    """Wrap ``inner`` and append the feature columns stored in ``features_dir``.

    Args:
        inner: the wrapped datamodule (its loaders must cut batches from a dataset by index
            tensors, as every datamodule of this project does).
        features_dir: directory with ``<prefix>_<split>.npy`` and ``<prefix>.json``; null = none.
        prefix: file name prefix of the feature files.
    """

    def __init__(
        self, inner: DataModule, features_dir: str | None = None, prefix: str = "lum_features"
    ) -> None:
        self.inner = inner
        self.features_dir = None if features_dir is None else Path(features_dir)
        self.prefix = prefix
        self.names: list[str] = []
        self._columns: dict[str, np.ndarray] = {}
        self._schema: Schema | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name + ("+features" if self.features_dir is not None else "")

    def setup(self) -> None:
        if self._schema is not None:
            return
        self.inner.setup()
        schema = self.inner.schema
        if self.features_dir is not None:
            meta_file = self.features_dir / f"{self.prefix}.json"
            if not meta_file.is_file():
                raise FileNotFoundError(
                    f"feature_join: {meta_file} does not exist; run the feature-writing stage first or "
                    "point data.features_dir at its output directory"
                )
            meta = json.loads(meta_file.read_text())
            self.names = list(meta["names"])
            taken = {f.name for f in schema.features} & set(self.names)
            if taken:
                raise ValueError(f"feature_join: columns {sorted(taken)} already exist in the wrapped schema")
            for split in SPLITS:
                cols = np.load(self.features_dir / f"{self.prefix}_{split}.npy", mmap_mode="r")
                if cols.shape[1] != len(self.names):
                    raise ValueError(
                        f"feature_join: {split} features have {cols.shape[1]} columns, names {len(self.names)}"
                    )
                self._columns[split] = cols
            schema = Schema(
                features=(*schema.features, *(Feature(n, FeatureKind.NUMERIC) for n in self.names)),
                labels=schema.labels,
                action_names=schema.action_names,
            )
        self._schema = schema

    @property
    def schema(self) -> Schema:
        self.setup()
        assert self._schema is not None
        return self._schema

    def _wrap(self, loader: DataLoader, split: str) -> DataLoader:
        if self.features_dir is None:
            return loader
        columns = self._columns[split]
        rows = len(loader.dataset)  # type: ignore[arg-type]
        if rows != columns.shape[0]:
            raise ValueError(
                f"feature_join: the {split} split has {rows} rows but {self.features_dir} holds features for "
                f"{columns.shape[0]}; the features were written for other data — the wrapped data config "
                "(data.inner.*) must equal the one the feature stage read"
            )
        return DataLoader(
            _JoinedDataset(loader.dataset, columns),
            sampler=loader.sampler,
            batch_size=None,
            collate_fn=_identity,
            num_workers=loader.num_workers,
            persistent_workers=loader.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._wrap(self.inner.train_dataloader(), "train")

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._wrap(self.inner.val_dataloader(), "val")

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._wrap(self.inner.test_dataloader(), "test")

    def oracle_metrics(self, split: str) -> dict[str, float]:
        return self.inner.oracle_metrics(split)
