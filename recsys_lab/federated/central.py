"""``strategy=central``: the reference row of every federated comparison (no federation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from flwr.app import ArrayRecord

from recsys_lab.data.datamodule import TableSplit
from recsys_lab.federated.channel import Channel
from recsys_lab.federated.client import Federation
from recsys_lab.federated.data import train_epochs


class CentralReference:
    """Central training on the pooled rows of every client (``epochs`` epochs); no federation.

    Takes the strategies' arguments so ``conf/strategy/central.yaml`` composes like the others.
    """

    one_shot = False

    def __init__(
        self,
        fed: Federation,
        channel: Channel,
        epochs: int = 3,
        evaluate: Callable[[ArrayRecord], dict[str, float]] | None = None,
        seed: int = 0,
    ) -> None:
        self.fed, self.epochs, self.seed = fed, epochs, seed

    def fit(self, model: torch.nn.Module) -> None:
        pooled = TableSplit(
            dense=torch.cat([c.dense for c in self.fed.clients]),
            sparse=torch.cat([c.sparse for c in self.fed.clients]),
            labels={"click": torch.cat([c.labels["click"] for c in self.fed.clients])},
        )
        local = self.fed.local
        train_epochs(model, pooled, self.epochs, local.batch_size, local.lr, self.seed)

    def summary_metrics(self) -> dict[str, float | int]:
        return {
            "fed/rounds": 0,
            "fed/energy_total_j": 0.0,
            "fed/energy_std_j": 0.0,
            "fed/clients_dropped": 0,
            "fed/uplink_s": 0.0,
        }
