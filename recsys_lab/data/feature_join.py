"""``data=feature_join``: any datamodule plus precomputed per-sample feature columns in ``Batch.dense``.

:class:`ColumnJoinDataModule` is the shared machinery (also behind ``data=pair_features``,
:mod:`recsys_lab.data.pair_features`); :class:`FeatureJoinDataModule` reads the columns from files.

A feature writer (e.g. LUM's knowledge querying, :mod:`recsys_lab.runners.lum_features`) stores, per split,
an array ``[rows of split, K]`` whose row r belongs to the split's r-th sample in the wrapped
datamodule's dataset order, plus a JSON file naming the K columns. This wrapper appends those
columns to ``Batch.dense`` and to the schema's numeric features, so every model reads them with no
change. Batches are cut by the wrapped datamodule's own samplers (same shuffling, same resume
behaviour); the wrapper only knows which rows each batch holds.

With ``features_dir: null`` it passes the wrapped data through unchanged.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from recsys_lab.data.batch import Batch
from recsys_lab.data.datamodule import SPLITS, DataModule, DataSize, LoaderSpec, check_size
from recsys_lab.data.schema import Feature, FeatureKind, Schema


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


class ColumnJoinDataModule(DataModule):
    """Base of the wrappers that append per-sample numeric columns to ``inner``'s ``Batch.dense``.

    A subclass says where the columns come from (:meth:`load_columns`: their names and one
    ``[rows of split, K]`` array per split, row r for the split's r-th sample); this class checks
    them against the wrapped data, extends the schema with numeric features and wraps ``inner``'s
    loaders, so batches keep the inner samplers' order, shuffling and resume behaviour.

    Its loader spec and size are the wrapped data's (the config passes ``data.size`` on to
    ``data.inner.size``; ``size`` here must agree with it).
    """

    def __init__(self, inner: DataModule, size: DataSize = "full") -> None:
        where = type(self).__name__
        check_size(size, where)
        inner_size = getattr(inner, "size", "full")
        if inner_size != size:
            raise ValueError(
                f"{where}: data.size={size!r} but the wrapped data has size={inner_size!r}; set "
                "data.size only (the config passes it on to data.inner.size)"
            )
        self.inner = inner
        self.size = size
        self.names: list[str] = []
        self._columns: dict[str, np.ndarray] = {}
        self._schema: Schema | None = None

    #: what a row-count mismatch means and how to fix it (end of the error message)
    mismatch_hint = "the columns were written for other data"

    @property
    @abstractmethod
    def active(self) -> bool:
        """Whether columns are appended (False passes the wrapped data through unchanged)."""

    @abstractmethod
    def load_columns(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """Column names and, per split, a float array ``[rows of split, K]``."""

    @property
    def loader(self) -> LoaderSpec:  # type: ignore[override]
        return self.inner.loader

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name + ("+features" if self.active else "")

    def setup(self) -> None:
        if self._schema is not None:
            return
        self.inner.setup()
        schema = self.inner.schema
        if self.active:
            self.names, self._columns = self.load_columns()
            taken = {f.name for f in schema.features} & set(self.names)
            if taken:
                raise ValueError(
                    f"{type(self).__name__}: columns {sorted(taken)} already exist in the wrapped schema"
                )
            for split in SPLITS:
                if self._columns[split].shape[1] != len(self.names):
                    raise ValueError(
                        f"{type(self).__name__}: {split} has {self._columns[split].shape[1]} columns for "
                        f"{len(self.names)} names"
                    )
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
        if not self.active:
            return loader
        columns = self._columns[split]
        rows = len(loader.dataset)  # type: ignore[arg-type]
        if rows != columns.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: the {split} split has {rows} rows but the joined columns have "
                f"{columns.shape[0]}; {self.mismatch_hint}"
            )
        return self.loader.build(_JoinedDataset(loader.dataset, columns), loader.sampler)

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


class FeatureJoinDataModule(ColumnJoinDataModule):
    """Wrap ``inner`` and append the feature columns stored in ``features_dir``.

    Args:
        inner: the wrapped datamodule (its loaders must cut batches from a dataset by index
            tensors, as every datamodule of this project does).
        features_dir: directory with ``<prefix>_<split>.npy`` and ``<prefix>.json``; null = none.
        prefix: file name prefix of the feature files.
        size: ``data.size`` (see :class:`ColumnJoinDataModule`).
    """

    mismatch_hint = (
        "the features were written for other data — the wrapped data config (data.inner.*) must "
        "equal the one the feature stage read"
    )

    def __init__(
        self,
        inner: DataModule,
        features_dir: str | None = None,
        prefix: str = "lum_features",
        size: DataSize = "full",
    ) -> None:
        super().__init__(inner, size)
        self.features_dir = None if features_dir is None else Path(features_dir)
        self.prefix = prefix

    @property
    def active(self) -> bool:
        return self.features_dir is not None

    def load_columns(self) -> tuple[list[str], dict[str, np.ndarray]]:
        assert self.features_dir is not None
        meta_file = self.features_dir / f"{self.prefix}.json"
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"feature_join: {meta_file} does not exist; run the feature-writing stage first or "
                "point data.features_dir at its output directory"
            )
        names = list(json.loads(meta_file.read_text())["names"])
        columns = {s: np.load(self.features_dir / f"{self.prefix}_{s}.npy", mmap_mode="r") for s in SPLITS}
        return names, columns
