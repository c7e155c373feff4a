"""``data=pair_features``: any datamodule with ``split(name)``, plus pair statistics as dense features.

Reads the ``pair_features.pt`` written by the PCF-GNN pre-training stage
(:func:`recsys_lab.tasks.pcf.pretrain_stage`) and appends one numeric column per chosen field pair
to ``Batch.dense``, extending the schema with numeric features ``pcf_<a>_x_<b>``:

- ``columns=gnn``: the GNN's predicted pair CTR;
- ``columns=exact``: the exact statistics table (smoothed CTR, prior for unseen pairs);
- ``columns=none`` or ``features_file=null``: nothing appended (the no-cross-feature baseline,
  same data).

Columns are ``logit(ctr)``, centred on the logit of the training prior. Rows must match the inner
datamodule's splits one to one (same data config and seed as the pre-training stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from recsys_lab.data.datamodule import SPLITS, DataModule, TableSplit, table_loader
from recsys_lab.data.schema import Feature, Schema

Columns = Literal["gnn", "exact", "none"]


class PairFeatureDataModule(DataModule):
    """Args:
    inner: the wrapped datamodule (must have ``split(name) -> TableSplit``, ``batch_size``,
        ``eval_batch_size``; e.g. ``data/synthetic``).
    features_file: ``pair_features.pt`` of a pcf stage, or None for no extra columns.
    columns: which statistics to append: ``gnn``, ``exact`` or ``none``.
    """

    def __init__(self, inner: DataModule, features_file: str | None = None, columns: Columns = "gnn") -> None:
        if columns not in ("gnn", "exact", "none"):
            raise ValueError(f"data.columns must be gnn, exact or none, got {columns!r}")
        if not callable(getattr(inner, "split", None)):
            raise ValueError(
                f"data=pair_features wraps a datamodule with split(name); {type(inner).__name__} has none"
            )
        self.inner = inner
        self.features_file = features_file
        self.columns = columns
        self.name = inner.name
        self._splits: dict[str, TableSplit] = {}
        self._schema: Schema | None = None
        self._pairs: list[str] = []
        self._seen: dict[str, torch.Tensor] = {}

    @property
    def active(self) -> bool:
        return self.features_file is not None and self.columns != "none"

    def _load(self) -> dict:
        path = Path(str(self.features_file))
        if not path.is_file():
            raise FileNotFoundError(
                f"data.features_file={path} does not exist; point it at the pair_features.pt written by the "
                "pcf stage of pipeline=pcf_gnn (e.g. ${stage:pcf,features_file})"
            )
        return torch.load(path, map_location="cpu", weights_only=False)

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            self.setup()
        assert self._schema is not None
        return self._schema

    def setup(self) -> None:
        if self._splits:
            return
        self.inner.setup()
        base = self.inner.schema
        if not self.active:
            self._schema = base
            self._splits = {s: self.inner.split(s) for s in SPLITS}  # type: ignore[attr-defined]
            return
        saved = self._load()
        self._pairs = list(saved["pairs"])
        centre = torch.logit(torch.tensor(float(saved["prior"])))
        splits = {}
        for s in SPLITS:
            table: TableSplit = self.inner.split(s)  # type: ignore[attr-defined]
            feats = saved["splits"][s][self.columns]  # [N, P]
            if feats.shape[0] != len(table):
                raise ValueError(
                    f"{self.features_file} has {feats.shape[0]} {s} rows but the data has {len(table)}: run the "
                    "pcf stage and this stage with the same data config and seed"
                )
            extra = torch.logit(feats.clamp(1e-4, 1 - 1e-4)) - centre  # [N, P]
            splits[s] = TableSplit(
                dense=torch.cat([table.dense, extra.float()], 1),
                sparse=table.sparse,
                labels=table.labels,
                user=table.user,
                extras=table.extras,
            )
            self._seen[s] = saved["splits"][s]["seen"]
        self._splits = splits
        self._schema = Schema((*base.features, *(Feature(f"pcf_{p}", "numeric") for p in self._pairs)))

    def split(self, name: str) -> TableSplit:
        self.setup()
        return self._splits[name]

    def seen(self, name: str) -> torch.Tensor | None:
        """bool ``[N, P]``: whether each sample's chosen pairs occur in training (None when inactive)."""
        self.setup()
        return self._seen.get(name)

    def train_dataloader(self) -> DataLoader:
        seed = int(getattr(getattr(self.inner, "spec", None), "seed", 0))
        return table_loader(self.split("train"), self.inner.batch_size, shuffle=True, seed=seed)  # type: ignore[attr-defined]

    def val_dataloader(self) -> DataLoader:
        return table_loader(self.split("val"), self.inner.eval_batch_size, shuffle=False)  # type: ignore[attr-defined]

    def test_dataloader(self) -> DataLoader:
        return table_loader(self.split("test"), self.inner.eval_batch_size, shuffle=False)  # type: ignore[attr-defined]

    def oracle_metrics(self, split: str) -> dict[str, float]:
        return self.inner.oracle_metrics(split)
