"""Synthetic data with known true probabilities.

- ``data=synthetic``: a tabular CTR table with a planted logit (:mod:`.tabular`, :mod:`.datamodule`).
- ``data=synthetic_seq`` / ``data=synthetic_stream``: the synthetic *world* — users and ads over
  days, behaviour histories with action types, domains, onboarding content and retention
  (:mod:`.world`, :mod:`.sequences`, :mod:`.onboarding`, :mod:`.seq_datamodule`,
  :mod:`.stream_datamodule`; see docs/synthetic_world.md).
"""

from recsys_lab.data.synthetic.datamodule import SyntheticDataModule
from recsys_lab.data.synthetic.onboarding import ContentCatalogue, Onboarding
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule, WorldDataModule
from recsys_lab.data.synthetic.sequences import WorldSamples
from recsys_lab.data.synthetic.stream_datamodule import DayOrderedBatchSampler, SyntheticStreamDataModule
from recsys_lab.data.synthetic.tabular import (
    PlantedModel,
    SyntheticTable,
    SyntheticTabularSpec,
    generate_splits,
)
from recsys_lab.data.synthetic.world import ACTION_NAMES, EventLog, World, WorldSpec

__all__ = [
    "ACTION_NAMES",
    "ContentCatalogue",
    "DayOrderedBatchSampler",
    "EventLog",
    "Onboarding",
    "PlantedModel",
    "SyntheticDataModule",
    "SyntheticSeqDataModule",
    "SyntheticStreamDataModule",
    "SyntheticTable",
    "SyntheticTabularSpec",
    "World",
    "WorldDataModule",
    "WorldSamples",
    "WorldSpec",
    "generate_splits",
]
