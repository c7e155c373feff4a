"""Data contract (Schema, Batch, Jagged), datasets and datamodules. Never imports Lightning."""

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema

__all__ = ["Batch", "Feature", "FeatureKind", "FeatureRole", "Jagged", "Schema"]
