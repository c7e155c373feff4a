"""Flower strategies that account for energy and the uplink: FedAvg with random selection, and
BEFL (selection by a heuristic or a learned policy, SLSQP bandwidth allocation).

:class:`EnergyAwareFedAvg` extends Flower's ``FedAvg`` (``flwr.serverapp.strategy``): its
``configure_train`` asks a :class:`~.selection.Selector` for this round's clients among those whose
battery is not empty, allocates the uplink band (equal shares or SLSQP), and sends each client the
global model; its ``aggregate_train`` sends every reply's update over the
:class:`~.channel.Channel`, charges each device its computation and communication energy
(:class:`EnergyLedger`) — a device whose battery cannot cover the round dies and its update is
lost — and averages the surviving updates with Flower's ``aggregate_arrayrecords``.

**Decision:** the physics (battery drain, the MAC's collisions) is simulated on the server side,
because the uplink couples the clients; in a deployment each device would measure its own.
Before the first round a Flower ``query`` message asks every node which client (partition) it is,
so Flower node ids are never assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from recsys_lab.federated.allocation import equal_allocation, slsqp_allocation, uplink_energy
from recsys_lab.federated.channel import Channel
from recsys_lab.federated.client import ROLE_CLASSIFIER, Federation
from recsys_lab.federated.selection import SelectionState, Selector

Allocator = Literal["equal", "slsqp"]


class EnergyLedger:
    """Battery left and energy spent per device. ``spend`` returns False when the device died."""

    def __init__(self, battery_j: np.ndarray) -> None:
        self.battery = np.asarray(battery_j, dtype=float).copy()
        self.remaining = self.battery.copy()
        self.spent = np.zeros_like(self.battery)
        self.dead = np.zeros(self.battery.shape, dtype=bool)

    def spend(self, client: int, energy_j: float) -> bool:
        if energy_j >= self.remaining[client]:
            self.spent[client] += self.remaining[client]
            self.remaining[client] = 0.0
            self.dead[client] = True
            return False
        self.remaining[client] -= energy_j
        self.spent[client] += energy_j
        return True


@dataclass
class RoundRecord:
    round: int
    selected: list[int]
    energy_j: float
    uplink_s: float
    dropped: list[int] = field(default_factory=list)
    val_logloss: float = float("nan")


class EnergyAwareFedAvg(FedAvg):
    """FedAvg over the devices of ``fed``, with selection, allocation, channel and energy accounting.

    Args:
        fed: the federation (profiles, data sizes, local training).
        channel: the uplink model.
        selector: picks each round's clients.
        clients_per_round: K.
        allocation: ``equal`` shares or BEFL's ``slsqp``.
        spread_weight: λ of the SLSQP objective (energy spread term).
        deadline_s: optional per-round deadline for SLSQP (compute + upload).
        evaluate: global arrays -> validation metrics (the selector's reward; may be None).
        seed: seeds the channel simulation.
    """

    def __init__(
        self,
        fed: Federation,
        channel: Channel,
        selector: Selector,
        clients_per_round: int,
        allocation: Allocator = "equal",
        spread_weight: float = 0.0,
        deadline_s: float | None = None,
        evaluate: Callable[[ArrayRecord], dict[str, float]] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)
        if not 1 <= clients_per_round <= fed.num_clients:
            raise ValueError(
                f"clients_per_round={clients_per_round} must be in [1, num_clients={fed.num_clients}]"
            )
        if allocation not in ("equal", "slsqp"):
            raise ValueError(f"allocation={allocation!r}: use 'equal' or 'slsqp'")
        self.fed = fed
        self.channel = channel
        self.selector = selector
        self.clients_per_round = clients_per_round
        self.allocation = allocation
        self.spread_weight = spread_weight
        self.deadline_s = deadline_s
        self.evaluate_fn = evaluate
        self.rng = np.random.default_rng(seed)
        self.ledger = EnergyLedger(np.array([p.battery_j for p in fed.profiles]))
        self.losses = np.ones(fed.num_clients)  # last reported local loss (1.0 until heard from)
        self.rounds: list[RoundRecord] = []
        self._pending: dict[int, float] = {}  # client -> allocated bandwidth (Hz)
        self.client_of: dict[int, int] = {}  # Flower node id -> client (partition id)
        self.node_of: dict[int, int] = {}  # client -> Flower node id
        self._last_val = float("nan")

    #: whether Flower's reply consistency check applies (all replies carry the same arrays)
    validate_replies = True
    #: run for one round only (one-shot strategies)
    one_shot = False

    # -- hooks for subclasses --------------------------------------------------------------------
    def role(self, client: int) -> str:
        return ROLE_CLASSIFIER

    def extra_config(self, client: int) -> dict[str, int | float | str]:
        """More keys of the train message's ConfigRecord for ``client``."""
        return {}

    def combine(self, server_round: int, replies: list[Message]) -> ArrayRecord | None:
        """Weighted average of the surviving updates (FedAvg)."""
        return aggregate_arrayrecords([m.content for m in replies], self.weighted_by_key) if replies else None

    # -- selection state ---------------------------------------------------------------------------
    def estimated_energy(self, bits: float) -> np.ndarray:
        """Each device's energy for one round if selected: compute + upload at an equal share."""
        k = self.clients_per_round
        compute = np.array(
            [self.fed.compute_cost(i, self.fed.local.epochs)[2] for i in range(self.fed.num_clients)]
        )
        upload, _ = uplink_energy(
            np.full(self.fed.num_clients, 1.0 / k), self.fed.profiles, bits, self.channel.bandwidth_hz
        )
        return compute + upload

    def selection_state(self, server_round: int, bits: float) -> SelectionState:
        return SelectionState(
            server_round=server_round,
            num_examples=self.fed.num_examples(),
            est_energy=self.estimated_energy(bits),
            spent=self.ledger.spent.copy(),
            remaining=self.ledger.remaining.copy(),
            battery=self.ledger.battery.copy(),
            loss=self.losses.copy(),
            alive=~self.ledger.dead,
        )

    # -- Flower Strategy ---------------------------------------------------------------------------
    def discover(self, grid: Grid) -> None:
        """Map Flower node ids to clients: one ``query`` message to every node not yet known."""
        unknown = [n for n in grid.get_node_ids() if n not in self.client_of]
        if not unknown:
            return
        queries = [Message(RecordDict(), message_type=MessageType.QUERY, dst_node_id=n) for n in unknown]
        for reply in grid.send_and_receive(queries):
            if not reply.has_error():
                client = int(reply.content["device"]["partition-id"])
                self.client_of[reply.metadata.src_node_id] = client
                self.node_of[client] = reply.metadata.src_node_id

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.discover(grid)
        bits = 32.0 * sum(a.numpy().size for a in arrays.values())
        state = self.selection_state(server_round, bits)
        state.alive &= np.array([i in self.node_of for i in range(self.fed.num_clients)])
        if not state.alive.any():
            self._pending = {}
            return []
        chosen = self.selector.select(state, min(self.clients_per_round, int(state.alive.sum())), self.rng)
        profiles = [self.fed.profiles[i] for i in chosen]
        if self.allocation == "slsqp" and self.channel.allocates_bandwidth:
            t_cmp = np.array([self.fed.compute_cost(i, self.fed.local.epochs)[1] for i in chosen])
            alloc = slsqp_allocation(
                profiles,
                bits,
                self.channel.bandwidth_hz,
                compute_time_s=t_cmp,
                deadline_s=self.deadline_s,
                spent_j=self.ledger.spent[chosen],
                spread_weight=self.spread_weight,
            )
        else:
            alloc = equal_allocation(profiles, bits, self.channel.bandwidth_hz)
        self._pending = {c: float(b) for c, b in zip(chosen, alloc.bandwidth_hz, strict=True)}
        messages = []
        for c in chosen:
            cfg = ConfigRecord(dict(config))
            cfg["server-round"] = server_round
            cfg["role"] = self.role(c)
            cfg["bandwidth-hz"] = self._pending[c]
            cfg.update(self.extra_config(c))
            content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: cfg})
            messages.append(
                Message(content=content, message_type=MessageType.TRAIN, dst_node_id=self.node_of[c])
            )
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=self.validate_replies)
        valid = [m for m in valid if self.client_of.get(m.metadata.src_node_id) in self._pending]
        clients = [self.client_of[m.metadata.src_node_id] for m in valid]
        metrics = [m.content["metrics"] for m in valid]
        uplink = self.channel.uplink(
            [self.fed.profiles[c] for c in clients],
            np.array([self._pending[c] for c in clients]),
            np.array([float(mr["update-bits"]) for mr in metrics]),
            self.rng,
        )
        survivors, dropped, energy = [], [], 0.0
        for j, (c, msg, mr) in enumerate(zip(clients, valid, metrics, strict=True)):
            need = float(mr["compute-energy-j"]) + float(uplink.energy_j[j])
            before = self.ledger.spent[c]
            if self.ledger.spend(c, need):
                survivors.append(msg)
                self.losses[c] = float(mr["train-loss"])
            else:
                dropped.append(c)
            energy += self.ledger.spent[c] - before
        arrays = self.combine(server_round, survivors)
        record = RoundRecord(server_round, clients, energy, uplink.round_s, dropped)
        if arrays is not None and self.evaluate_fn is not None:
            record.val_logloss = self.evaluate_fn(arrays)["logloss"]
        self.rounds.append(record)
        self.selector.feedback(self.selection_state(server_round, 0.0), clients, self._reward(record))
        self._pending = {}
        out = MetricRecord(
            {
                "energy-j": energy,
                "uplink-s": uplink.round_s,
                "dropped": len(dropped),
                "selected": len(clients),
            }
        )
        return arrays, out

    def _reward(self, record: RoundRecord) -> float:
        """Round reward of the selection policy: the fall in validation log-loss (×10), minus the
        round's energy and the energy spread across devices, both relative to the mean battery."""
        prev, self._last_val = self._last_val, record.val_logloss
        gain = 0.0 if np.isnan(prev) or np.isnan(record.val_logloss) else 10.0 * (prev - record.val_logloss)
        scale = float(self.ledger.battery.mean())
        return gain - record.energy_j / scale - float(np.std(self.ledger.spent)) / scale

    # -- results ------------------------------------------------------------------------------------
    def summary_metrics(self) -> dict[str, float | int]:
        return {
            "fed/rounds": len(self.rounds),
            "fed/energy_total_j": float(self.ledger.spent.sum()),
            "fed/energy_std_j": float(self.ledger.spent.std()),
            "fed/clients_dropped": int(self.ledger.dead.sum()),
            "fed/uplink_s": float(sum(r.uplink_s for r in self.rounds)),
        }
