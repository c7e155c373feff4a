"""Runs a Flower ``ServerApp`` against a Flower ``ClientApp`` inside this process.

**Decision (see docs/federated.md).** Flower 1.42's own simulation runtime
(``flwr.simulation.run_simulation``) needs Ray, SQLAlchemy >= 2 (its link state), FastAPI and
rich < 15; the project pins SQLAlchemy 1.4 (Optuna 2.10 storage) and rich 15, and Ray's daemons
are heavy on a shared 2-core machine. The federated code therefore uses Flower's message API
(``ServerApp``, ``ClientApp``, ``Message``, ``ArrayRecord``, the ``Strategy.start`` loop of
``flwr.serverapp.strategy``) unchanged, and replaces only the transport: :class:`InProcessGrid`
implements Flower's abstract ``Grid`` by calling the ``ClientApp`` of the destination node
directly, one message after another, each node keeping its own ``Context`` across rounds as a
SuperNode would. The same ``ServerApp``/``ClientApp`` objects run under ``flwr run`` on a
SuperLink with SuperNodes (a deployment, with Flower's full dependency set) unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import uuid4

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


class InProcessGrid(Grid):
    """A Flower ``Grid`` whose nodes are ``ClientApp`` calls in this process.

    Args:
        client_app: the ClientApp every node runs.
        node_configs: one ``node_config`` per node (e.g. ``{"partition-id": k}``); node ids are
            random 62-bit integers, as on a SuperLink.
        run_id: the run's id (stamped on every message).
    """

    def __init__(
        self, client_app: ClientApp, node_configs: list[dict[str, int | float | str]], run_id: int = 1
    ):
        self.client_app = client_app
        self.run_id = run_id
        # Random 62-bit node ids, as a SuperLink assigns them: nothing may assume their values.
        ids = np.random.default_rng(run_id).choice(2**62, size=len(node_configs), replace=False) + 1
        self.contexts = {
            int(n): Context(
                run_id=run_id, node_id=int(n), node_config=dict(cfg), state=RecordDict(), run_config={}
            )
            for n, cfg in zip(ids, node_configs, strict=True)
        }
        self._replies: dict[str, Message] = {}
        self._run = Run.create_empty(run_id=run_id)
        # Messages read the sender's identity from here (as flwr.simulation sets it).
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            if node not in self.contexts:
                raise ValueError(f"InProcessGrid: no node {node}; known nodes: {sorted(self.contexts)}")
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            # A ClientApp exception is a bug in this simulation, not a device fault: let it raise.
            reply = self.client_app(msg, self.contexts[node])
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_in_process(
    server_app: ServerApp, client_app: ClientApp, node_configs: list[dict[str, int | float | str]]
) -> None:
    """Run ``server_app`` to completion against ``len(node_configs)`` in-process nodes."""
    grid = InProcessGrid(client_app, node_configs)
    server_app(
        grid, Context(run_id=grid.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={})
    )
