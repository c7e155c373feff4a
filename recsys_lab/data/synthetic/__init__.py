"""Synthetic CTR data with a known optimum (``data=synthetic``)."""

from recsys_lab.data.synthetic.datamodule import SyntheticDataModule
from recsys_lab.data.synthetic.tabular import (
    PlantedModel,
    SyntheticTable,
    SyntheticTabularSpec,
    generate_splits,
)

__all__ = ["PlantedModel", "SyntheticDataModule", "SyntheticTable", "SyntheticTabularSpec", "generate_splits"]
