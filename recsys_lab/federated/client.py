"""The federation's clients: their data and devices, and the Flower ``ClientApp`` they run.

A node's ``Context.node_config["partition-id"]`` says which client it is (Flower's simulation
runtime sets that key too). On a ``query`` message the device replies with its partition id and
profile (the server maps Flower node ids to clients with it). On a ``train`` message
(config keys: ``role``, ``server-round``, optional ``local-epochs``) the ClientApp trains either the CTR model it was sent (role ``classifier``) or a small
:class:`~recsys_lab.federated.vae.TabularVAE` (role ``vae``, FedMHO's constrained devices) on its
own rows and replies with the weights and a MetricRecord: ``num-examples``, ``train-loss``,
``cycles`` (``epochs · n · cycles_per_sample``), ``compute-time-s``, ``compute-energy-j`` (from its
device profile) and ``update-bits`` (32 bits per float sent back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from recsys_lab.data.datamodule import TableSplit
from recsys_lab.data.schema import Schema
from recsys_lab.federated.data import train_epochs
from recsys_lab.federated.devices import DeviceDistribution, DeviceProfile
from recsys_lab.federated.vae import TabularVAE, train_vae
from recsys_lab.models.base import CTRModel

ROLE_CLASSIFIER = "classifier"
ROLE_VAE = "vae"


@dataclass(frozen=True)
class LocalTraining:
    """Local training of one round: ``epochs`` over the client's rows, ``batch_size``, Adam ``lr``."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"local training: need epochs >= 1, batch_size >= 1, lr > 0; got {self}")


@dataclass(frozen=True)
class VaeSpec:
    """The constrained devices' generative model (:class:`TabularVAE`) and its local training."""

    latent_dim: int = 8
    hidden: int = 64
    embed_dim: int = 4
    beta: float = 1.0
    epochs: int = 5
    lr: float = 3e-3

    def build(self, schema: Schema) -> TabularVAE:
        return TabularVAE(schema, self.latent_dim, self.hidden, self.embed_dim, self.beta)


@dataclass
class Federation:
    """Everything the simulated devices hold: data, profiles, the model to train and how."""

    schema: Schema
    clients: list[TableSplit]
    profiles: list[DeviceProfile]
    devices: DeviceDistribution
    model_factory: Callable[[], CTRModel]
    local: LocalTraining
    vae: VaeSpec
    seed: int

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def num_examples(self) -> np.ndarray:
        return np.array([len(c) for c in self.clients], dtype=float)

    def compute_cost(self, client: int, epochs: int) -> tuple[float, float, float]:
        """(cycles, time_s, energy_j) of ``epochs`` epochs over client ``client``'s rows."""
        cycles = epochs * len(self.clients[client]) * self.devices.cycles_per_sample
        p = self.profiles[client]
        return cycles, p.compute_time_s(cycles), p.compute_energy_j(cycles, self.devices.kappa)


def _bits(state: dict[str, torch.Tensor]) -> float:
    return 32.0 * sum(v.numel() for v in state.values() if v.is_floating_point())


def make_client_app(fed: Federation) -> ClientApp:
    """The ClientApp of every device of ``fed``."""
    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """The device introduces itself: its partition (which client it is) and its profile."""
        client = int(context.node_config["partition-id"])
        p = fed.profiles[client]
        info = ConfigRecord(
            {
                "partition-id": client,
                "battery-j": p.battery_j,
                "cpu-hz": p.cpu_hz,
                "tx-power-w": p.tx_power_w,
                "channel-gain": p.channel_gain,
                "num-examples": len(fed.clients[client]),
            }
        )
        return Message(RecordDict({"device": info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        client = int(context.node_config["partition-id"])
        config = msg.content["config"]
        role = str(config.get("role", ROLE_CLASSIFIER))
        server_round = int(config.get("server-round", 1))
        seed = fed.seed * 100_003 + server_round * 1_009 + client
        torch.manual_seed(seed)
        rows = fed.clients[client]
        if role == ROLE_CLASSIFIER:
            epochs = int(config.get("local-epochs", fed.local.epochs))
            model = fed.model_factory()
            model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
            loss = train_epochs(model, rows, epochs, fed.local.batch_size, fed.local.lr, seed)
            state = model.state_dict()
        elif role == ROLE_VAE:
            vae = fed.vae.build(fed.schema)
            loss = train_vae(vae, rows, fed.vae.epochs, fed.local.batch_size, fed.vae.lr, seed)
            state = vae.state_dict()
            epochs = fed.vae.epochs
        else:
            raise ValueError(
                f"ClientApp: unknown role {role!r}; expected {ROLE_CLASSIFIER!r} or {ROLE_VAE!r}"
            )
        cycles, time_s, energy_j = fed.compute_cost(client, epochs)
        metrics = MetricRecord(
            {
                "num-examples": len(rows),
                "train-loss": float(loss),
                "cycles": float(cycles),
                "compute-time-s": float(time_s),
                "compute-energy-j": float(energy_j),
                "update-bits": _bits(state),
            }
        )
        return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=msg)

    return app
