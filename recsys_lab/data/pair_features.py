"""``data=pair_features``: any datamodule plus pair statistics as dense features.

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

import numpy as np
import torch

from recsys_lab.data.datamodule import SPLITS, DataModule, DataSize, TableSplit
from recsys_lab.data.feature_join import ColumnJoinDataModule

Columns = Literal["gnn", "exact", "none"]


class PairFeatureDataModule(ColumnJoinDataModule):
    """Args:
    inner: the wrapped datamodule (e.g. ``data/synthetic``).
    features_file: ``pair_features.pt`` of a pcf stage, or None for no extra columns.
    columns: which statistics to append: ``gnn``, ``exact`` or ``none``.
    size: ``data.size`` (passed on to ``data.inner.size`` by the config).
    """

    mismatch_hint = "run the pcf stage and this stage with the same data config and seed"

    def __init__(
        self,
        inner: DataModule,
        features_file: str | None = None,
        columns: Columns = "gnn",
        size: DataSize = "full",
    ) -> None:
        if columns not in ("gnn", "exact", "none"):
            raise ValueError(f"data.columns must be gnn, exact or none, got {columns!r}")
        super().__init__(inner, size)
        self.features_file = features_file
        self.columns = columns
        self._seen: dict[str, torch.Tensor] = {}

    @property
    def active(self) -> bool:
        return self.features_file is not None and self.columns != "none"

    def load_columns(self) -> tuple[list[str], dict[str, np.ndarray]]:
        path = Path(str(self.features_file))
        if not path.is_file():
            raise FileNotFoundError(
                f"data.features_file={path} does not exist; point it at the pair_features.pt written by the "
                "pcf stage of pipeline=pcf_gnn (e.g. ${stage:pcf,features_file})"
            )
        saved = torch.load(path, map_location="cpu", weights_only=False)
        centre = torch.logit(torch.tensor(float(saved["prior"])))
        columns = {}
        for s in SPLITS:
            feats = saved["splits"][s][self.columns]  # [N, P] pair CTRs
            columns[s] = (torch.logit(feats.clamp(1e-4, 1 - 1e-4)) - centre).float().numpy()
            self._seen[s] = saved["splits"][s]["seen"]
        return [f"pcf_{p}" for p in saved["pairs"]], columns

    def split(self, name: str) -> TableSplit:
        """The wrapped data's split with the pair columns appended (needs ``inner.split``)."""
        self.setup()
        if not callable(getattr(self.inner, "split", None)):
            raise ValueError(f"{type(self.inner).__name__} has no split(name) to append pair columns to")
        table: TableSplit = self.inner.split(name)  # type: ignore[attr-defined]
        if not self.active:
            return table
        extra = torch.from_numpy(np.ascontiguousarray(self._columns[name]))
        return TableSplit(
            dense=torch.cat([table.dense, extra], 1),
            sparse=table.sparse,
            labels=table.labels,
            user=table.user,
            extras=table.extras,
        )

    def seen(self, name: str) -> torch.Tensor | None:
        """bool ``[N, P]``: whether each sample's chosen pairs occur in training (None when inactive)."""
        self.setup()
        return self._seen.get(name)
